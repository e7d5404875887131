// Named credentials for people: several publisher and operator bearer tokens,
// each with a name that becomes the actor of what its holder does (the audit
// log, daemon/audit_log.h). Created and revoked over the API, effective at
// once; the built-in token files (DIR/publisher.token, DIR/operator.token)
// stay as they are, beside these.
//
// Only a token's SHA-256 is kept: a token is 256 random bits, so its digest
// cannot be turned back into it by guessing, and a stolen store reveals no
// usable credential. A token is looked up by its digest; timing can tell an
// attacker about the digests of its own guesses only, never about a stored one.
//
// Stored keys (Store::WriteState, synced before Create or Revoke returns):
//   credential/<name>   {"role","token_sha256","created_ms","created_by"[,"revoked_ms"]}
// A name is never reused, revoked or not, so an actor in the audit log names
// one credential for good.
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/digest.h"
#include "base/status.h"
#include "daemon/routes.h"
#include "store/store.h"

namespace meridian {

struct CredentialsOptions {
  size_t credentials_max = 10'000;  // named credentials, revoked ones included
};

struct Credential {
  std::string name;
  CallerRole role = CallerRole::kOperator;  // kPublisher or kOperator
  int64_t created_ms = 0;
  std::string created_by;  // the actor who created it
  std::optional<int64_t> revoked_ms;  // when it was revoked; none while it is valid
};

// A credential's name: 1 to 64 of [A-Za-z0-9._@-], starting with a letter or
// digit, and none of the built-in credentials' and the gates' names
// (publisher, operator, terminal, mirror, gate), so an actor is never ambiguous.
bool IsValidCredentialName(std::string_view name);

class Credentials {
 public:
  // Loads the stored credentials. Corruption when one does not parse.
  static Result<std::unique_ptr<Credentials>> Open(Store& store, const Clock& clock, CredentialsOptions options = {});

  // Creates credential `name` of `role` and returns its token, which is kept
  // nowhere (only its digest is). InvalidArgument for an invalid name or a
  // role other than publisher or operator; AlreadyExists when the name was
  // ever used; ResourceExhausted at credentials_max; the store's error.
  Result<std::string> Create(std::string_view name, CallerRole role, std::string_view created_by);
  // Revokes a credential: its token is refused from now on. NotFound; OK
  // when it was revoked already (revoked_ms is kept).
  Status Revoke(std::string_view name);

  // The credential whose token is `token` (revoked ones too: the caller says
  // why it refuses), or nullopt.
  std::optional<Credential> Find(std::string_view token) const;
  // Every credential, by name.
  std::vector<Credential> List() const;

 private:
  struct Entry {
    Credential credential;
    Digest token_sha256;
  };
  Credentials(Store& store, const Clock& clock, CredentialsOptions options)
      : store_(store), clock_(clock), o_(options) {}
  Status Load();
  Status Write(const Entry& e);

  Store& store_;
  const Clock& clock_;
  const CredentialsOptions o_;
  // Serialises Create and Revoke, held across their store writes, so that
  // mu_ (taken by every Find) never waits on a synced write.
  std::mutex write_mu_;
  mutable std::mutex mu_;
  std::map<std::string, Entry, std::less<>> by_name_;  // guarded by mu_
  std::map<Digest, std::string> by_token_;             // guarded by mu_: token digest -> name
};

}  // namespace meridian
