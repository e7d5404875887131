// Unit tests of target/: a terminal's checks on signed channel states
// (signature, replay of an older state, expiry) and target resolution.
#include "target/target.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "base/digest.h"

using namespace meridian;

namespace {

constexpr int64_t kNowMs = 1'800'000'000'000;

struct Keys {
  SecretKey root = SecretKey::Generate();
  SecretKey online = SecretKey::Generate();
  Root trusted;
  Keys() {
    trusted.keys[root.KeyId()] = root.public_key();
    trusted.keys[online.KeyId()] = online.public_key();
    trusted.roles["root"] = Role{{root.KeyId()}, 1};
    trusted.roles["release"] = Role{{root.KeyId()}, 1};
    trusted.roles["online"] = Role{{online.KeyId()}, 1};
  }
};

VersionRef Ref(const std::string& v) {
  return {Digest::Of("manifest " + v), Digest::Of("artifact " + v), 1000};
}

ChannelState State(uint64_t state_version) {
  ChannelState s;
  s.model = "resnet";
  s.channel = "stable";
  s.state_version = state_version;
  s.issued_ms = kNowMs;
  s.expires_ms = kNowMs + 24 * 3600 * 1000;
  s.version = "1.0.0";
  RolloutSpec spec;
  spec.id = "r1";
  spec.model = "resnet";
  spec.target_version = "1.1.0";
  spec.previous_version = "1.0.0";
  spec.regions = {"sg"};
  spec.stages_percent = {50, 100};
  s.rollouts.push_back({spec, RolloutState{RolloutPhase::kRunning, 0, kNowMs, kNowMs}});
  s.versions = {{"1.0.0", Ref("1.0.0")}, {"1.1.0", Ref("1.1.0")}};
  return s;
}

}  // namespace

TEST_CASE("a signed channel state round-trips and verifies against the online role") {
  Keys k;
  std::string env = SignChannelState(State(7), k.online);
  Result<ChannelState> s = VerifyChannelState(k.trusted, env, "resnet", "stable", 7, kNowMs + 1000);
  REQUIRE(s.ok());
  CHECK(*s == State(7));
}

TEST_CASE("a replayed older state and an expired state fail verification") {
  Keys k;
  std::string old_env = SignChannelState(State(4), k.online);
  std::string new_env = SignChannelState(State(5), k.online);
  REQUIRE(VerifyChannelState(k.trusted, new_env, "resnet", "stable", 4, kNowMs).ok());
  // The terminal has seen state 5: state 4, correctly signed, is a rollback attack.
  Result<ChannelState> replayed = VerifyChannelState(k.trusted, old_env, "resnet", "stable", 5, kNowMs);
  REQUIRE_FALSE(replayed.ok());
  CHECK(replayed.status().code() == Status::Code::kFailedPrecondition);
  // Withheld updates: the newest state, kept past its expiry, is a freeze attack.
  Result<ChannelState> frozen =
      VerifyChannelState(k.trusted, new_env, "resnet", "stable", 5, State(5).expires_ms);
  REQUIRE_FALSE(frozen.ok());
  CHECK(frozen.status().code() == Status::Code::kDeadlineExceeded);
}

TEST_CASE("a state signed by another key, of another channel or tampered with is refused") {
  Keys k;
  SecretKey stranger = SecretKey::Generate();
  Result<ChannelState> forged =
      VerifyChannelState(k.trusted, SignChannelState(State(9), stranger), "resnet", "stable", 0, kNowMs);
  CHECK(forged.status().code() == Status::Code::kPermissionDenied);
  // The release key is trusted for manifests, not for what terminals follow.
  Result<ChannelState> wrong_role =
      VerifyChannelState(k.trusted, SignChannelState(State(9), k.root), "resnet", "stable", 0, kNowMs);
  CHECK(wrong_role.status().code() == Status::Code::kPermissionDenied);
  std::string env = SignChannelState(State(9), k.online);
  CHECK(VerifyChannelState(k.trusted, env, "resnet", "beta", 0, kNowMs).status().code() ==
        Status::Code::kInvalidArgument);
  Result<Envelope> parsed = ParseEnvelope(env);
  REQUIRE(parsed.ok());
  parsed->payload.back() = ' ';  // still JSON, no longer the signed bytes
  CHECK(VerifyChannelState(k.trusted, EnvelopeToJson(*parsed), "resnet", "stable", 0, kNowMs).status().code() ==
        Status::Code::kPermissionDenied);
}

TEST_CASE("targets follow the newest covering rollout, else the channel pointer") {
  ChannelState s = State(1);
  const ChannelRollout& r = s.rollouts[0];
  int in_cohort = 0;
  for (int i = 0; i < 200; ++i) {
    TerminalInfo t{"t" + std::to_string(i), "pos", "sg", "1.0.0"};
    ChannelTarget got = ResolveChannelTarget(s, t);
    CHECK(got.version == ResolveTarget(r.spec, r.state, t).version);
    CHECK(got.rollout == "r1");
    CHECK(got.ref == s.versions.at(got.version));
    in_cohort += got.version == "1.1.0";
  }
  CHECK(in_cohort > 60);  // 50 % of 200, far from both ends
  CHECK(in_cohort < 140);
  // Outside the rollout's regions: the channel's own version.
  ChannelTarget other = ResolveChannelTarget(s, {"t1", "pos", "br", "1.0.0"});
  CHECK(other.version == "1.0.0");
  CHECK(other.rollout.empty());
  CHECK(other.reason == "channel");
}

TEST_CASE("malformed channel states are refused") {
  ChannelState s = State(1);
  s.versions.erase("1.1.0");  // a rollout names a version the document does not describe
  CHECK(ChannelStateFromJson(ChannelStateToJson(s)).status().code() == Status::Code::kInvalidArgument);
  CHECK_FALSE(ChannelStateFromJson("[]").ok());
  CHECK_FALSE(ChannelStateFromJson("{\"type\":\"meridian.target/v1\"}").ok());
  std::string twice = ChannelStateToJson(State(1));
  REQUIRE(ChannelStateFromJson(twice).ok());
  twice.insert(1, "\"state_version\":99,");
  CHECK_THAT(ChannelStateFromJson(twice).status().message(), Catch::Contains("repeats a key"));
}

TEST_CASE("version digests are written as sha256 strings and a malformed one is refused by name") {
  const std::string json = ChannelStateToJson(State(1));
  const std::string manifest = Digest::Of("manifest 1.1.0").ToString();
  const std::string artifact = Digest::Of("artifact 1.1.0").ToString();
  // The signed form is unchanged by the typed fields: the same strings as ever.
  const std::string entry =
      "\"1.1.0\":{\"digest\":\"" + artifact + "\",\"manifest_digest\":\"" + manifest + "\",\"size\":1000}";
  REQUIRE(json.find(entry) != std::string::npos);
  for (const std::string& bad : {std::string("sha256:xyz"), "SHA256:" + manifest.substr(7), manifest.substr(7)}) {
    std::string broken = json;
    broken.replace(broken.find(manifest), manifest.size(), bad);
    Result<ChannelState> s = ChannelStateFromJson(broken);
    CHECK(s.status().code() == Status::Code::kInvalidArgument);
    CHECK_THAT(s.status().message(), Catch::Contains("version '1.1.0': field 'manifest_digest'"));
  }
  std::string broken = json;
  broken.replace(broken.find(artifact), artifact.size(), "sha256:");
  CHECK_THAT(ChannelStateFromJson(broken).status().message(), Catch::Contains("version '1.1.0': field 'digest'"));
}

TEST_CASE("a waves rollout past its first region parses and decides per region") {
  ChannelState s = State(1);
  RolloutSpec& spec = s.rollouts[0].spec;
  spec.regions = {"sg", "ae", "br"};
  spec.waves = true;
  s.rollouts[0].state.stage = 3;  // ae at 100 %: beyond stages_percent, within the 6 wave stages
  Result<ChannelState> back = ChannelStateFromJson(ChannelStateToJson(s));
  REQUIRE(back.ok());
  CHECK(*back == s);
  for (int i = 0; i < 50; ++i) {
    std::string id = "t" + std::to_string(i);
    CHECK(ResolveChannelTarget(*back, {id, "pos", "ae", "1.0.0"}).version == "1.1.0");  // ae at 100 %
    ChannelTarget br = ResolveChannelTarget(*back, {id, "pos", "br", "1.0.0"});
    CHECK(br.version == "1.0.0");  // br's wave has not started
    CHECK(br.rollout == "r1");
    CHECK(br.reason == "not_in_cohort");
  }
  s.rollouts[0].state.stage = 6;
  CHECK(ChannelStateFromJson(ChannelStateToJson(s)).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("a channel state from a newer writer is read past the fields it adds") {
  nlohmann::json j = nlohmann::json::parse(ChannelStateToJson(State(1)));
  j["newer"] = {{"x", 1}};
  j["rollouts"][0]["newer"] = true;
  j["rollouts"][0]["spec"]["newer"] = "a spec field this reader does not know";
  j["rollouts"][0]["state"]["newer"] = 1;
  j["versions"]["1.0.0"]["newer"] = 1;
  Result<ChannelState> back = ChannelStateFromJson(j.dump());
  REQUIRE(back.ok());
  CHECK(*back == State(1));
  j["versions"]["1.0.0"]["size"] = "1000";  // a field it knows, of the wrong type, is still refused
  CHECK_THAT(ChannelStateFromJson(j.dump()).status().message(), Catch::Contains("'size' must be an integer"));
}
