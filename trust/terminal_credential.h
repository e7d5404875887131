// A terminal's own identity: the signed request with which a terminal proves
// it holds its Ed25519 key, and the short-lived credential a daemon issues in
// return, bound to the terminal id (and the region and profile it was
// enrolled with) and signed by the origin's online key, so that any daemon
// holding the root — the origin or a region — verifies it offline.
//
// Credential request, in the head of POST /v1/terminals/{id}/credential
// (nothing else is sent, so it is checked before any body is read):
//   Authorization: Meridian-Terminal <base64 public key>.<unix ms>.<base64 signature>
// The signature is over PAE(kCredentialRequestType, "<terminal id> <unix ms>")
// (signing.h): it names the terminal, so a request for one id is no request
// for another, and the time lets the daemon refuse a replay (within a window,
// and never older than the last one it accepted from that terminal).
//
// Credential (sent as Authorization: Bearer <credential>):
//   mtc1.<base64 payload>.<base64 signature>
// payload: {"type":"meridian.terminal-credential/v1","terminal":"…","region":"…",
//           "profile":"…","issued_ms":N,"expires_ms":N,"keyid":"<online key id>"}
// signature: Ed25519 by the key `keyid` over PAE(kCredentialPayloadType, payload).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "signing/signing.h"

namespace meridian {

inline constexpr std::string_view kCredentialRequestType = "application/vnd.meridian.credential-request.v1";
inline constexpr std::string_view kCredentialPayloadType = "application/vnd.meridian.terminal-credential.v1+json";
inline constexpr std::string_view kCredentialDocumentType = "meridian.terminal-credential/v1";
inline constexpr std::string_view kCredentialRequestScheme = "Meridian-Terminal";
// Longer input is refused unparsed: a credential's fields are all bounded.
inline constexpr size_t kCredentialBytesMax = 2048;

// What a terminal proves it holds: its key, at a time, for an id.
struct CredentialRequest {
  PublicKey key;
  int64_t time_ms = 0;
};

// The Authorization header value of a credential request by `key` for `terminal_id` at `time_ms`.
std::string SignCredentialRequest(const SecretKey& key, std::string_view terminal_id, int64_t time_ms);
// Parses and checks the header value of a request for `terminal_id`: the
// signature must be the key's over that id and time. InvalidArgument when the
// scheme is not kCredentialRequestScheme or the value is malformed;
// PermissionDenied when the signature does not verify.
Result<CredentialRequest> VerifyCredentialRequest(std::string_view authorization, std::string_view terminal_id);

// What a credential says.
struct TerminalCredential {
  std::string terminal_id;
  std::string region;   // as enrolled; may be empty
  std::string profile;  // as enrolled; may be empty
  int64_t issued_ms = 0;
  int64_t expires_ms = 0;
  bool operator==(const TerminalCredential&) const = default;
};

// Signs `credential` with `online` (a key of the root's "online" role).
std::string IssueCredential(const TerminalCredential& credential, const SecretKey& online);

// Whether `text` has the form of a credential (its prefix), so that a bearer
// token of another kind is told apart without a signature check.
bool LooksLikeCredential(std::string_view text);

// Verifies a credential against `root` at `now_ms`: signed by a key of the
// "online" role, well formed, issued no later than now (with a minute's
// slack for clocks) and not expired. InvalidArgument when it is not a
// credential at all; PermissionDenied naming what is wrong otherwise.
Result<TerminalCredential> VerifyCredential(const Root& root, std::string_view text, int64_t now_ms);

}  // namespace meridian
