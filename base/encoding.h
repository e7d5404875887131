// Hex and base64 (RFC 4648, padded) encoding, percent-encoding, and cutting
// UTF-8 text. Decoders are strict: anything that is not the canonical
// encoding is an error, never silently skipped.
#pragma once

#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace meridian {

// Lowercase hex.
std::string HexEncode(ByteSpan data);
// Accepts upper or lower case; fails on odd length or a non-hex character.
Result<Bytes> HexDecode(std::string_view hex);

std::string Base64Encode(ByteSpan data);
// RFC 3986 percent-encoding for a query value or path segment: every byte but
// the unreserved ones (ALPHA DIGIT - . _ ~) as %XX.
std::string PercentEncode(std::string_view text);
// Fails on characters outside the alphabet, missing padding or trailing garbage.
Result<Bytes> Base64Decode(std::string_view text);

// Whether `text` is well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF), which JSON text must be.
bool IsUtf8(std::string_view text);
// The longest prefix of `text` of at most `bytes_max` bytes that does not
// end inside a UTF-8 character, for a field with a byte limit.
std::string_view Utf8Prefix(std::string_view text, size_t bytes_max);

}  // namespace meridian
