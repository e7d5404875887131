// The `meridian` release managers' CLI: one function per command. Each
// returns the process exit code (0 on success) after printing either one
// clear error line on stderr or its result on stdout (text, or JSON with
// --output json).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace meridian::cli {

struct GlobalOptions {
  std::string server = "http://127.0.0.1:7400";
  std::string token;   // bearer token for publishing / control
  bool json = false;   // --output json
  int parallel = 4;    // concurrent chunk transfers
};

struct PublishOptions {
  std::string key_file;
  std::string model;
  std::string version;
  std::string path;
  std::string media_type = "application/octet-stream";
  std::vector<std::string> profiles;
  std::vector<std::string> regions;
  std::map<std::string, std::string> annotations;
};

struct PullOptions {
  std::string root_file;
  std::string model;
  std::string version;
  std::string out;
};

int Keygen(const GlobalOptions& g, const std::string& file);
int Publish(const GlobalOptions& g, const PublishOptions& o);
int ListModels(const GlobalOptions& g);
int ListVersions(const GlobalOptions& g, const std::string& model);
int Pull(const GlobalOptions& g, const PullOptions& o);

}  // namespace meridian::cli
