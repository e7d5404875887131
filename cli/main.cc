// meridian: the release managers' CLI (argument parsing only; the commands
// live in commands.cc).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <csignal>

#include "base/file.h"
#include "cli/commands.h"
#include "cli/output.h"

using namespace meridian;
using namespace meridian::cli;

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"meridian: publish and manage signed model versions on a meridiand server"};
  app.require_subcommand(1);
  GlobalOptions g;
  if (const char* s = std::getenv("MERIDIAN_SERVER")) g.server = s;
  if (const char* t = std::getenv("MERIDIAN_TOKEN")) g.token = t;
  std::string token_file, output = "text";
  app.add_option("--server", g.server, "daemon URL (env MERIDIAN_SERVER)")->capture_default_str();
  app.add_option("--token", g.token, "bearer token (env MERIDIAN_TOKEN)");
  app.add_option("--token-file", token_file, "read the bearer token from this file");
  app.add_option("--output", output, "text or json")->check(CLI::IsMember({"text", "json"}))->capture_default_str();
  app.add_option("--parallel", g.parallel, "concurrent chunk transfers")->check(CLI::Range(1, 64))->capture_default_str();

  std::string key_out;
  CLI::App* keygen = app.add_subcommand("keygen", "create an Ed25519 key pair: FILE (secret, 0600) and FILE.pub");
  keygen->add_option("FILE", key_out, "secret key file to write")->required();

  PublishOptions pub;
  std::vector<std::string> annotations;
  CLI::App* publish = app.add_subcommand("publish", "chunk, upload (only what the server lacks), sign and commit");
  publish->add_option("--key", pub.key_file, "release key (secret key file)")->required();
  publish->add_option("--model", pub.model, "model name")->required();
  publish->add_option("--version", pub.version, "SemVer version")->required();
  publish->add_option("--media-type", pub.media_type, "media type of the artifact")->capture_default_str();
  publish->add_option("--profile", pub.profiles, "device profile it targets (repeatable)");
  publish->add_option("--region", pub.regions, "region it may be stored in (repeatable; none = all)");
  publish->add_option("--annotation", annotations, "KEY=VALUE annotation (repeatable)");
  publish->add_option("PATH", pub.path, "the model file")->required()->check(CLI::ExistingFile);

  CLI::App* models = app.add_subcommand("models", "list models");
  std::string versions_model;
  CLI::App* versions = app.add_subcommand("versions", "list the versions of a model");
  versions->add_option("MODEL", versions_model, "model name")->required();

  PullOptions pull;
  CLI::App* pull_cmd = app.add_subcommand("pull", "download a version, verify it against the root, write it atomically");
  pull_cmd->add_option("--root", pull.root_file, "trusted root document (root.json)")->required();
  pull_cmd->add_option("-o,--out", pull.out, "output file")->required();
  pull_cmd->add_option("MODEL", pull.model, "model name")->required();
  pull_cmd->add_option("VERSION", pull.version, "version")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  g.json = output == "json";
  if (!token_file.empty()) {
    Result<std::string> t = ReadFileToString(token_file, 4096);
    if (!t.ok()) return Fail(t.status());
    g.token = *t;
    while (!g.token.empty() && std::isspace(static_cast<unsigned char>(g.token.back()))) g.token.pop_back();
  }
  for (const std::string& a : annotations) {
    size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0) return Fail("--annotation wants KEY=VALUE, got '" + a + "'");
    pub.annotations[a.substr(0, eq)] = a.substr(eq + 1);
  }

  if (*keygen) return Keygen(g, key_out);
  if (*publish) return Publish(g, pub);
  if (*models) return ListModels(g);
  if (*versions) return ListVersions(g, versions_model);
  if (*pull_cmd) return Pull(g, pull);
  return Fail("no command");
}
