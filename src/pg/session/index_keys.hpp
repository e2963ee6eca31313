// Index keys in a session: keyed HMAC contexts for search tags (blind indexes), one per index
// key version in use, keyed from the shared key cache like the cipher contexts of DEKs and
// re-keyed when the cache entry changes. Kept apart from the cipher cache on purpose: an index
// key never seals or opens a value, and a DEK never computes a tag.
#pragma once
#include "boundary/pg_includes.hpp"

#include "envelope_format.hpp"
#include "tag_key.hpp"

namespace envelope::pg {

// How a plaintext is brought to a canonical form before it is tagged (per index).
enum class Normalization : uint8 { none = 0, nfkc = 1, casefold = 2 };

// Whether the current user must hold the search privilege on the index key. Every tag that a
// caller can see or compare needs it; only the tags an index computes for its own entries
// (which nobody reads back) do not.
enum class SearchCheck { required, index_internal };

// The tag of `data` (already normalised with `norm`) under the active version of the index
// key `key_name`. Raises when the key does not exist, is a data key, has no active version,
// cannot be loaded (destroyed, HSM unavailable) or the privilege is missing. used_id (may be
// null) receives the key version's id.
void index_tag_by_name(const char *key_name, SearchCheck check, Normalization norm,
                       const char *data, size_t len, uint8 out[envelope::kTagSize],
                       envelope::DekId *used_id);

// Raises 42809: a data key was named where an index key is needed.
[[noreturn]] void raise_data_key_misuse(const char *name);

// The same under one exact index key version (a probe's recheck).
void index_tag_by_id(const envelope::DekId &id, SearchCheck check, Normalization norm,
                     const char *data, size_t len, uint8 out[envelope::kTagSize]);

}  // namespace envelope::pg
