// The layout of a meridiand data directory, and `meridiand init`:
//   DIR/store/            RocksDB (chunks, manifests, state)
//   DIR/root.json         the root of trust (DSSE envelope signed by the root keys)
//   DIR/keys/online.key   the daemon's online signing key (0600)
//   DIR/keys/root.key     the root key, only when init generated it (0600)
//   DIR/publisher.token   bearer token for publishing (0600)
//   DIR/operator.token    bearer token for the control API (0600)
//   DIR/terminal.token    bearer token for terminals (0600)
//   DIR/mirror.token      bearer token for downstream regions (0600)
// A region's directory has no keys/ and no publisher.token: it signs nothing
// and takes no releases; its root.json is a copy of the origin's.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "signing/signing.h"

namespace meridian {

struct DataDir {
  std::string dir;
  std::string store() const { return dir + "/store"; }
  std::string root() const { return dir + "/root.json"; }
  std::string keys() const { return dir + "/keys"; }
  std::string online_key() const { return dir + "/keys/online.key"; }
  std::string root_key() const { return dir + "/keys/root.key"; }
  std::string publisher_token() const { return dir + "/publisher.token"; }
  std::string operator_token() const { return dir + "/operator.token"; }
  std::string terminal_token() const { return dir + "/terminal.token"; }
  std::string mirror_token() const { return dir + "/mirror.token"; }
};

struct InitOptions {
  std::string data_dir;
  std::vector<std::string> release_key_files;  // public key files; at least one
  std::string root_key_file;                   // secret key file; empty = generate one
  int release_threshold = 1;
  int root_expiry_days = 365;
  // Set for a region: the origin's root.json to trust. No keys are made and
  // release_key_files must be empty.
  std::string region_root_file;
};

// Creates a new data directory (an origin's, or a region's when
// options.region_root_file is set). AlreadyExists when DIR/root.json is present
// (an initialised store is never overwritten). Returns human-readable lines
// naming every file written.
Result<std::vector<std::string>> InitDataDir(const InitOptions& options);

// A fresh bearer token: 256 random bits in hex. IOError without randomness.
Result<std::string> NewToken();

// Reads a token file (trailing whitespace trimmed); InvalidArgument when empty.
Result<std::string> ReadTokenFile(const std::string& path);
// Reads a token file, first writing a fresh random token (0600) when there
// is none: data directories initialised before a role existed get its token.
Result<std::string> ReadOrCreateTokenFile(const std::string& path);

}  // namespace meridian
