// Integration: k-of-n releases. A daemon whose root asks for 2 of its 2
// release keys keeps a version signed once invisible (not listed, not
// served, not replicated, not rolled out) until a second release manager
// signs it with `meridian sign`; a key outside the root and a key signing
// twice count for nothing more.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "manifest/manifest.h"
#include "signing/signing.h"
#include "tests/harness.h"

using namespace meridian;
using namespace meridian::testing;
using Json = nlohmann::json;

namespace {

struct CoSigning {
  TempDir keys;
  std::string second = keys / "second.key";  // the root's other release key
  std::string outsider = keys / "outsider.key";  // a key the root does not name
  std::unique_ptr<DaemonFixture> d;

  CoSigning() {
    for (const std::string& k : {second, outsider}) REQUIRE(Run({MeridianPath(), "keygen", k}).exit_code == 0);
    d = std::make_unique<DaemonFixture>(std::vector<std::string>{"--release-key", second + ".pub", "--release-threshold", "2"});
    d->Start();
  }
  CommandResult Publish(const std::string& version, const std::string& file, const std::vector<std::string>& key_files) {
    std::vector<std::string> args = {"--token", d->publisher_token(), "--output", "json", "publish",
                                     "--model", "fraud", "--version", version};
    for (const std::string& k : key_files) args.insert(args.end(), {"--key", k});
    args.push_back(file);
    return d->Cli(args);
  }
  CommandResult Sign(const std::string& version, const std::string& key_file, const std::string& expect = "") {
    std::vector<std::string> args = {"--token", d->publisher_token(), "--output", "json", "sign", "fraud", version,
                                     "--key", key_file};
    if (!expect.empty()) args.insert(args.end(), {"--expect-digest", expect});
    return d->Cli(args);
  }
  long HttpStatus(const std::string& path, const std::string& token) {
    HttpClient c(d->url(), HttpClientOptions{.bearer_token = token});
    return c.Get(path).value().status;
  }
  Json Get(const std::string& path, const std::string& token) {
    HttpClient c(d->url(), HttpClientOptions{.bearer_token = token});
    HttpReply r = c.Get(path).value();
    INFO(r.body);
    REQUIRE(r.status == 200);
    return Json::parse(r.body);
  }
  bool Visible(const std::string& version) {
    return HttpStatus("/v1/models/fraud/versions/" + version, d->terminal_token()) == 200;
  }
  std::vector<std::string> PendingSigners(const std::string& version) {
    const Json pending = Get("/v1/pending", d->publisher_token());
    for (const Json& p : pending["pending"]) {
      if (p["version"] == version) return p["signers"].get<std::vector<std::string>>();
    }
    return {};
  }
};

std::string KeyIdOf(const std::string& key_file) { return ReadSecretKeyFile(key_file).value().KeyId(); }

}  // namespace

TEST_CASE("with a threshold of 2, one signature leaves a version invisible and the second makes it visible") {
  CoSigning s;
  DaemonFixture& d = *s.d;
  WriteFile(d.dir() / "v1", RandomBytes(3 << 20, 1));
  const std::string digest = Digest::Of(ReadFile(d.dir() / "v1")).ToString();
  const std::string first_id = KeyIdOf(d.release_key()), second_id = KeyIdOf(s.second);

  // One signature: accepted, kept, invisible.
  CommandResult p = s.Publish("1.0.0", d.dir() / "v1", {d.release_key()});
  INFO(p.err);
  REQUIRE(p.exit_code == 0);
  Json pj = Json::parse(p.out);
  CHECK(pj["pending"] == true);
  CHECK(pj["signers"] == Json::array({first_id}));
  CHECK(pj["threshold"] == 2);
  CHECK_FALSE(s.Visible("1.0.0"));
  CHECK(s.HttpStatus("/v1/models/fraud/versions", d.terminal_token()) == 404);
  CHECK(s.Get("/v1/sync?region=sg", d.mirror_token())["versions"].empty());
  CHECK(s.HttpStatus("/v1/artifacts/" + digest, d.terminal_token()) == 404);
  HttpClient op(d.url(), HttpClientOptions{.bearer_token = d.operator_token()});
  CHECK(op.Post("/v1/rollouts", RolloutSpecJson("r1", "1.0.0")).value().status >= 400);
  CHECK(s.HttpStatus("/v1/pending", d.terminal_token()) == 403);  // release managers' business only
  CommandResult listed = d.Cli({"--token", d.publisher_token(), "versions", "fraud"});
  CHECK(listed.exit_code == 0);
  CHECK(listed.out.find("1.0.0 (pending: 1 of 2 signatures, by " + first_id + ")") != std::string::npos);

  // The same key again counts once; a key outside the root counts not at all.
  CHECK(s.Publish("1.0.0", d.dir() / "v1", {d.release_key(), d.release_key()}).exit_code != 0);  // the CLI says so
  {
    // And the daemon, when an envelope carries one key's signature twice.
    HttpClient pub(d.url(), HttpClientOptions{.bearer_token = d.publisher_token()});
    Envelope env = ParseEnvelope(pub.Get("/v1/models/fraud/pending/1.0.0").value().body).value();
    SignEnvelope(env, ReadSecretKeyFile(d.release_key()).value());
    HttpReply twice = pub.Post("/v1/models/fraud/versions", EnvelopeToJson(env)).value();
    CHECK(twice.status == 202);
    CHECK(Json::parse(twice.body)["signatures"] == 1);
  }
  CommandResult again = s.Sign("1.0.0", d.release_key());
  CHECK(again.exit_code == 0);
  CHECK(Json::parse(again.out)["pending"] == true);
  CommandResult outsider = s.Sign("1.0.0", s.outsider);
  CHECK(outsider.exit_code == 0);
  CHECK(Json::parse(outsider.out)["signers"] == Json::array({first_id}));
  CHECK_FALSE(s.Visible("1.0.0"));
  // A manifest signed by no release key of the root is not stored at all.
  WriteFile(d.dir() / "v9", RandomBytes(1 << 20, 9));
  CHECK(s.Publish("9.0.0", d.dir() / "v9", {s.outsider}).exit_code != 0);
  CHECK(s.Get("/v1/pending", d.publisher_token())["pending"].size() == 1);

  // The second release manager checks what they sign.
  CommandResult wrong = s.Sign("1.0.0", s.second, "sha256:" + std::string(64, '0'));
  CHECK(wrong.exit_code != 0);
  CHECK(wrong.err.find("not signing") != std::string::npos);
  CHECK_FALSE(s.Visible("1.0.0"));
  CommandResult second = s.Sign("1.0.0", s.second, digest);
  INFO(second.err);
  REQUIRE(second.exit_code == 0);
  CHECK(Json::parse(second.out)["pending"] == false);
  CHECK(s.Visible("1.0.0"));
  CHECK(s.Get("/v1/models/fraud/versions", d.terminal_token())["versions"] == Json::array({"1.0.0"}));
  CHECK(s.Get("/v1/pending", d.publisher_token())["pending"].empty());
  CHECK(s.Get("/v1/sync?region=sg", d.mirror_token())["versions"].size() == 1);
  CommandResult pulled = d.Cli({"--token", d.terminal_token(), "pull", "--root", d.root_json(), "fraud", "1.0.0", "-o",
                                d.dir() / "pulled"});
  INFO(pulled.err);
  CHECK(pulled.exit_code == 0);
  CHECK(ReadFile(d.dir() / "pulled") == ReadFile(d.dir() / "v1"));
  CommandResult shown = d.Cli({"--token", d.publisher_token(), "--output", "json", "show", "fraud", "1.0.0", "--root",
                               d.root_json()});
  REQUIRE(shown.exit_code == 0);
  Json sj = Json::parse(shown.out);
  CHECK(sj["pending"] == false);
  CHECK(sj["signers"] == Json::array({first_id, second_id}));
  CHECK(op.Post("/v1/rollouts", RolloutSpecJson("r1", "1.0.0")).value().status == 201);
}

TEST_CASE("a pending version survives a restart; two keys at once publish at once") {
  CoSigning s;
  DaemonFixture& d = *s.d;
  WriteFile(d.dir() / "v1", RandomBytes(1 << 20, 2));
  WriteFile(d.dir() / "v2", RandomBytes(1 << 20, 3));
  REQUIRE(s.Publish("1.0.0", d.dir() / "v1", {d.release_key()}).exit_code == 0);
  REQUIRE(d.Terminate() == 0);
  d.Restart();
  CHECK(s.PendingSigners("1.0.0").size() == 1);
  CHECK_FALSE(s.Visible("1.0.0"));
  // Another manifest under a pending version is refused, not merged.
  CHECK(s.Publish("1.0.0", d.dir() / "v2", {s.second}).exit_code != 0);
  CHECK(s.Sign("1.0.0", s.second).exit_code == 0);
  CHECK(s.Visible("1.0.0"));

  CommandResult both = s.Publish("2.0.0", d.dir() / "v2", {d.release_key(), s.second});
  REQUIRE(both.exit_code == 0);
  CHECK(Json::parse(both.out)["pending"] == false);
  CHECK(s.Visible("2.0.0"));
  // Signing a published version changes nothing: its signatures are final.
  CommandResult late = s.Sign("2.0.0", s.outsider);
  CHECK(late.exit_code == 0);
  CHECK(Json::parse(late.out)["pending"] == false);
}
