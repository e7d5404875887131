// meridiand's --config text: each setting read as its type, a wrong type or
// an out-of-range value refused naming the file and the key, flags winning.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "daemon/config.h"
#include "daemon/descriptors.h"

using namespace meridian;

namespace {

// ApplyConfigText with the flags in `given` set on the command line.
Status Apply(ServeOptions& o, const std::string& text, std::set<std::string> given = {}) {
  return ApplyConfigText(o, text, "meridiand.toml",
                         [&given](std::string_view flag) { return given.count(std::string(flag)) > 0; });
}

}  // namespace

TEST_CASE("config: settings of the right type are applied; flags given win") {
  ServeOptions o;
  REQUIRE(Apply(o, "data = \"/var/lib/m\"\nthreads = 4\nhead_timeout_ms = 2500\nconnections_max = 30000\n"
                   "upstream = [\"https://a.example\", \"https://b.example\"]\nupstream_allow_insecure_http = true\n"
                   "tls_key = \"k.pem\"\ndelta_literal_level = 9\n")
              .ok());
  CHECK(o.data == "/var/lib/m");
  CHECK(o.threads == 4);
  CHECK(o.head_timeout_ms == 2500);
  CHECK(o.connections_max == 30000);
  CHECK(o.upstream == std::vector<std::string>{"https://a.example", "https://b.example"});
  CHECK(o.upstream_allow_insecure_http);
  CHECK(o.tls_key == "k.pem");
  CHECK(o.deltas.encoder.literal_level == 9);

  ServeOptions flagged;
  flagged.threads = 2;
  flagged.upstream = {"https://flag.example"};
  REQUIRE(Apply(flagged, "threads = 8\nupstream = \"https://file.example\"\n", {"--threads", "--upstream"}).ok());
  CHECK(flagged.threads == 2);
  CHECK(flagged.upstream == std::vector<std::string>{"https://flag.example"});
}

TEST_CASE("config: a value of the wrong type is refused, never silently the default") {
  for (const auto& [text, key] : std::vector<std::pair<std::string, std::string>>{
           {"threads = \"4\"", "threads"},
           {"threads = 4.0", "threads"},
           {"data = 7", "data"},
           {"upstream_allow_insecure_http = 1", "upstream_allow_insecure_http"},
           {"head_timeout_ms = true", "head_timeout_ms"},
           {"tls_key = [\"a\"]", "tls_key"},
           {"upstream = 5", "upstream"},
           {"delta_threads = \"2\"", "delta_threads"},
           {"threads = 99999999999", "threads"},  // beyond int
       }) {
    INFO(text);
    ServeOptions o;
    Status st = Apply(o, text);
    CHECK(st.code() == Status::Code::kInvalidArgument);
    CHECK(st.message().find("meridiand.toml") != std::string::npos);
    CHECK(st.message().find(key) != std::string::npos);
  }
  // Checked even when a flag given wins over it.
  ServeOptions o;
  CHECK(Apply(o, "threads = \"4\"", {"--threads"}).code() == Status::Code::kInvalidArgument);
}

TEST_CASE("config: out-of-range values and unknown keys are refused") {
  for (const std::string text : {"threads = -1", "threads = 5000", "connections_max = 0", "connections_max = 1048577", "head_timeout_ms = 0", "body_timeout_ms = 3600001",
                                 "delta_threads = 0", "delta_literal_level = 23", "credential_lifetime_ms = 5",
                                 "nonsense = 1", "threads = ", "keep_versions = -1", "collect_interval_ms = 10",
                                 "unreferenced_grace_ms = 0", "report_ids_ms = 999", "keep_versions = \"3\"", "chunk_cache_bytes = -1", "scrub_interval_ms = 999",
                                 "data = \"\\nstore\"", "upstream = [\"http://o\\r\"]",
                                 "upstream = \"http://o\\u007f\"",
                                 "[time_zones]\n\"'\" = \"Asia/Singapore\""}) {
    INFO(text);
    ServeOptions o;
    CHECK(Apply(o, text).code() == Status::Code::kInvalidArgument);
  }
}

TEST_CASE("config: retention settings") {
  ServeOptions o;
  REQUIRE(Apply(o, "keep_versions = 5\ncollect_interval_ms = 0\nunreferenced_grace_ms = 7200000\nreport_ids_ms = 86400000\n"
                   "chunk_cache_bytes = 0\nscrub_interval_ms = 0")
              .ok());
  CHECK(o.chunk_cache_bytes == 0);
  CHECK(o.scrub_interval_ms == 0);
  CHECK(o.retention.keep_versions == 5);
  CHECK(o.retention.interval_ms == 0);
  CHECK(o.unreferenced_grace_ms == 7'200'000);
  CHECK(o.retention.report_ids_ms == 86'400'000);
  ServeOptions defaults;
  REQUIRE(Apply(defaults, "").ok());
  CHECK(defaults.retention.keep_versions == 0);  // nothing is deleted unless asked
  CHECK(defaults.unreferenced_grace_ms == 24ll * 3600 * 1000);
}

TEST_CASE("descriptors: the store gets twice the files it has, at least a 64th of the limit and at most an eighth; connections the rest") {
  // A new store: the least it gets (256, or a 64th of the limit), and every
  // other descriptor but the reserve to connections.
  DescriptorBudget b = SplitDescriptors(10'000, 10, 65'536);
  CHECK(b.store_files_max == 256);
  CHECK(b.connections_max == 10'000 - 256 - kDescriptorsReserved);
  b = SplitDescriptors(65'536, 10, 65'536);
  CHECK(b.store_files_max == 1'024);
  CHECK(b.connections_max == 65'536 - 1'024 - kDescriptorsReserved);
  // A store of 1,000 files gets room for 2,000; at most an eighth of the limit (2,500 of 20,000).
  CHECK(SplitDescriptors(20'000, 1'000, 65'536).store_files_max == 2'000);
  CHECK(SplitDescriptors(20'000, 5'000, 65'536).store_files_max == 2'500);
  CHECK(SplitDescriptors(1 << 20, 100'000, 65'536).store_files_max == 4'096);
  // The smallest limit: an eighth is 32.
  b = SplitDescriptors(kDescriptorsMin, 0, 65'536);
  CHECK(b.store_files_max == 32);
  CHECK(b.connections_max == kDescriptorsMin - 32 - kDescriptorsReserved);
  // connections_max bounds connections when descriptors would allow more.
  CHECK(SplitDescriptors(1 << 20, 0, 65'536).connections_max == 65'536);
  CHECK(SplitDescriptors(1 << 20, 0, 100).connections_max == 100);
}
