// The trust layer: where a signed document from outside the process becomes a
// value the program acts on. Each Verify* function parses the DSSE envelope,
// checks its payload type and the signatures of the role that may sign it
// (signing/ VerifyPayload), then parses the payload it vouched for — the bytes
// verified are the bytes parsed. Channel states have theirs beside their type
// (target/ VerifyChannelState); roots in signing/.
//
// Errors are alike for every document, so each caller maps them once:
//   InvalidArgument   not a DSSE envelope, or one with another payload type
//   PermissionDenied  too few valid signatures of the role
//   Corruption        validly signed, but the payload is not a valid document
//                     of its kind, or not the one asked for
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "delta/delta_info.h"
#include "manifest/chunk_pages.h"
#include "manifest/manifest.h"
#include "signing/signing.h"

namespace meridian {

// A manifest signed by a threshold of the root's release keys, with the
// envelope it came in (what a daemon stores and serves byte for byte). Only
// VerifySignedManifest makes one, so code that takes one — the store's
// CommitVersion above all — cannot be handed bytes nobody checked.
class VerifiedManifest {
 public:
  const Manifest& manifest() const { return manifest_; }
  const std::string& envelope() const { return envelope_; }
  // Corruption unless the manifest is of `model` and (when not empty) `version`:
  // a validly signed manifest of another version served in place of the one asked for.
  Status CheckNames(std::string_view model, std::string_view version = {}) const;
  // A paged manifest's chunk list, read from its index pages (each checked
  // against the digest the signed manifest gives it): see ResolveChunkPages.
  Status ResolveChunkPages(const ReadPage& read_page) { return meridian::ResolveChunkPages(&manifest_, read_page); }

 private:
  friend Result<VerifiedManifest> VerifySignedManifest(const Root& root, std::string envelope_json);
  VerifiedManifest(Manifest manifest, std::string envelope)
      : manifest_(std::move(manifest)), envelope_(std::move(envelope)) {}

  Manifest manifest_;
  std::string envelope_;
};

// Verifies a manifest envelope (payload type kManifestPayloadType, role "release").
Result<VerifiedManifest> VerifySignedManifest(const Root& root, std::string envelope_json);

// A manifest envelope with at least one valid release signature, perhaps
// fewer than the root's threshold: a release waiting for co-signers
// (meridian sign). Not a VerifiedManifest: nothing may serve or commit it
// until its signatures reach the threshold.
struct CoSignedManifest {
  Manifest manifest;
  Envelope envelope;                 // only the valid release signatures, one per key (MergeSignatures)
  std::vector<std::string> signers;  // their key ids, in envelope order
  int threshold = 1;                 // release signatures the root requires
  bool complete() const { return signers.size() >= static_cast<size_t>(threshold); }
};

// Verifies what a co-signer sent: a manifest envelope (payload type
// kManifestPayloadType) with at least one valid signature by a release key of
// `root`; its payload is parsed only then. Signatures by other keys, invalid
// ones and repeats are dropped. PermissionDenied when no release key signed;
// the other errors as above.
Result<CoSignedManifest> VerifyCoSignedManifest(const Root& root, std::string_view envelope_json);

// Verifies a delta descriptor envelope (payload type kDeltaInfoPayloadType,
// role "online") and that it describes the delta from `from` to `to`.
Result<DeltaInfo> VerifyDeltaInfo(const Root& root, std::string_view envelope_json, const Digest& from,
                                  const Digest& to);

}  // namespace meridian
