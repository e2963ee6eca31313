// Equality search on encrypted_text through blind indexes: the hash operator class
// envelope.blind_ops (options key, bits, normalization), its planner support for
// `column = 'plaintext'` and envelope.matches(), the probe type envelope.tag_probe, and
// envelope.blind_tag() for unique (btree) indexes of full-length tags. The design and what an
// index reveals are in the README, "Searching encrypted columns".
#include "boundary/guard.hpp"
#include "session/index_keys.hpp"
#include "session/value_crypto.hpp"

#include "db/keyring.hpp"
#include "hex.hpp"
#include "wipe.hpp"

extern "C" {
#include "access/reloptions.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "commands/defrem.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pathnodes.h"
#include "nodes/supportnodes.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "parser/parse_oper.h"
}

#include <cstddef>
#include <cstring>

using namespace envelope::pg;

namespace {

constexpr size_t kTagSize = envelope::kTagSize;

// The opclass options as PostgreSQL lays them out (build_local_reloptions).
struct BlindOptions {
    int32 vl_len_;
    int key;  // offset of the key name within this struct, 0 when not given
    int bits;
    int normalization;
};

relopt_enum_elt_def normalization_values[] = {
    {"none", static_cast<int>(Normalization::none)},
    {"nfkc", static_cast<int>(Normalization::nfkc)},
    {"casefold", static_cast<int>(Normalization::casefold)},
    {nullptr, 0}};

const char *normalization_name(Normalization n) {
    switch (n) {
        case Normalization::nfkc:
            return "nfkc";
        case Normalization::casefold:
            return "casefold";
        case Normalization::none:
            break;
    }
    return "none";
}

Normalization parse_normalization(const char *s) {
    for (const relopt_enum_elt_def *v = normalization_values; v->string_val; ++v) {
        if (strcmp(v->string_val, s) == 0) return static_cast<Normalization>(v->symbol_val);
    }
    ereport(ERROR,
            (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid normalization \"%s\"", s),
             errhint("Use none, nfkc or casefold.")));
}

int checked_bits(int bits) {
    if (bits < 1 || bits > 32) {
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("bits must be between 1 and 32")));
    }
    return bits;
}

void wipe_varlena(struct varlena *v) {
    if (v == nullptr) return;
    envelope::secure_zero(VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
    pfree(v);
}

// A plaintext in its canonical form for tagging. owned is wiped and freed by release().
struct Normalized {
    const char *data;
    size_t len;
    struct varlena *owned;
};

// NFKC (compatibility composition, so "ﬁ" and "fi" agree) and, for casefold, lower() under the
// database's default collation after it. Unicode normalisation needs a UTF-8 database.
Normalized normalize(const char *data, size_t len, Normalization n) {
    if (n == Normalization::none) return Normalized{data, len, nullptr};
    text *input = cstring_to_text_with_len(data, static_cast<int>(len));
    Datum nfkc = DirectFunctionCall2Coll(unicode_normalize_func, InvalidOid, PointerGetDatum(input),
                                         CStringGetTextDatum("NFKC"));
    wipe_varlena(reinterpret_cast<struct varlena *>(input));
    struct varlena *out = reinterpret_cast<struct varlena *>(DatumGetPointer(nfkc));
    if (n == Normalization::casefold) {
        Datum lowered = DirectFunctionCall1Coll(lower, DEFAULT_COLLATION_OID, nfkc);
        wipe_varlena(out);
        out = reinterpret_cast<struct varlena *>(DatumGetPointer(lowered));
    }
    return Normalized{VARDATA_ANY(out), VARSIZE_ANY_EXHDR(out), out};
}

void release(Normalized &n) {
    wipe_varlena(n.owned);
    n.owned = nullptr;
}

// The hash an index keeps: the tag's first four bytes, cut to `bits` bits.
uint32 tag_hash(const uint8 tag[kTagSize], int bits) {
    const uint32 h = (static_cast<uint32>(tag[0]) << 24) | (static_cast<uint32>(tag[1]) << 16) |
                     (static_cast<uint32>(tag[2]) << 8) | static_cast<uint32>(tag[3]);
    return bits >= 32 ? h : h & ((1u << bits) - 1u);
}

bool tags_equal(const uint8 *a, const uint8 *b) {
    uint8 diff = 0;
    for (size_t i = 0; i < kTagSize; ++i) diff |= static_cast<uint8>(a[i] ^ b[i]);
    return diff == 0;
}

// The tag of a stored encrypted_text value (opened here, never returned).
void value_tag(const bytea *stored, const char *key_name, SearchCheck check, Normalization norm,
               uint8 out[kTagSize]) {
    struct varlena *plain = open_text_for_tag(reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)),
                                              VARSIZE_ANY_EXHDR(stored));
    Normalized n = normalize(VARDATA(plain), VARSIZE(plain) - VARHDRSZ, norm);
    index_tag_by_name(key_name, check, norm, n.data, n.len, out, nullptr);
    release(n);
    wipe_varlena(plain);
}

// envelope.tag_probe: what a query compares an index with. Made only by envelope.tag_probe().
struct ProbeData {
    uint8 format;  // 1
    uint8 normalization;
    uint8 bits;
    uint8 reserved;
    uint8 key_id[16];  // the index key version that made the tag
    uint8 tag[kTagSize];
};
static_assert(sizeof(ProbeData) == 52, "tag_probe layout");

const ProbeData *probe_of(const bytea *v) {
    if (VARSIZE_ANY_EXHDR(v) != sizeof(ProbeData) ||
        reinterpret_cast<const ProbeData *>(VARDATA_ANY(v))->format != 1) {
        ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
                        errmsg("malformed tag_probe value")));
    }
    return reinterpret_cast<const ProbeData *>(VARDATA_ANY(v));
}

const BlindOptions *options_of(FunctionCallInfo fcinfo) {
    if (!PG_HAS_OPCLASS_OPTIONS()) {
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("envelope.blind_ops hashes values only inside an index"),
                        errhint("Compute tags with envelope.blind_tag().")));
    }
    return reinterpret_cast<const BlindOptions *>(PG_GET_OPCLASS_OPTIONS());
}

const char *key_option(const BlindOptions *o) {
    const char *key = o ? GET_STRING_RELOPTION(o, key) : nullptr;
    if (key == nullptr || key[0] == '\0') {
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("envelope.blind_ops needs the index key in its key option"),
                        errhint("Write the column as: column envelope.blind_ops (key = "
                                "'index key name').")));
    }
    return key;
}

// Validates the key option when an index is created (also by a restore): an existing index
// key with an active version. PostgreSQL also calls it with the default (NULL) whenever the
// options are declared; a missing key is reported where the index first needs it.
void validate_key_option(const char *value) {
    if (value == nullptr) return;
    if (value[0] == '\0' || strlen(value) >= 64 * 4) {
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid index key name in the key option"),
                        errdetail("Key names are 1 to 63 characters long.")));
    }
    envelope::DekId id;
    bool index_key = false;
    if (!keyring_find_active(value, id, &index_key)) {
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("index key \"%s\" does not exist or has no active version", value),
                        errhint("Create it with envelope.create_index_key().")));
    }
    if (!index_key) raise_data_key_misuse(value);
}

const char *text_arg(FunctionCallInfo fcinfo, int n) {
    return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

}  // namespace

// Options of envelope.blind_ops: key (the index key), bits (1-32, default 32: how much of each
// tag the index keeps) and normalization (none, nfkc, casefold).
ENVELOPE_SQL_FUNCTION(envelope_blind_options) {
    auto *relopts = reinterpret_cast<local_relopts *>(PG_GETARG_POINTER(0));
    init_local_reloptions(relopts, sizeof(BlindOptions));
    add_local_string_reloption(relopts, "key", "index key that computes the tags", nullptr,
                               validate_key_option, nullptr, offsetof(BlindOptions, key));
    add_local_int_reloption(relopts, "bits", "bits of each tag the index keeps", 32, 1, 32,
                            offsetof(BlindOptions, bits));
    add_local_enum_reloption(relopts, "normalization", "canonical form of values before tagging",
                             normalization_values, static_cast<int>(Normalization::none),
                             "Valid values are \"none\", \"nfkc\" and \"casefold\".",
                             offsetof(BlindOptions, normalization));
    PG_RETURN_VOID();
}

// The index side: the hash of a stored value under the index's key (no privilege needed: the
// tag goes into the index only).
ENVELOPE_SQL_FUNCTION(envelope_blind_hash) {
    const BlindOptions *o = options_of(fcinfo);
    const char *key = key_option(o);
    const auto norm = static_cast<Normalization>(o->normalization);
    uint8 tag[kTagSize];
    value_tag(PG_GETARG_BYTEA_PP(0), key, SearchCheck::index_internal, norm, tag);
    PG_RETURN_UINT32(tag_hash(tag, o->bits));
}

ENVELOPE_SQL_FUNCTION(envelope_tag_probe_in) {
    ereport(ERROR,
            (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("tag_probe values cannot be typed in"),
             errhint("Make them with envelope.tag_probe(value, key, normalization, "
                     "bits).")));
    PG_RETURN_NULL();
}

// "key version id/normalization/bits/tag in hex": the tag of a value the caller typed in.
ENVELOPE_SQL_FUNCTION(envelope_tag_probe_out) {
    const ProbeData *p = probe_of(PG_GETARG_BYTEA_PP(0));
    char uuid[37];
    envelope::format_uuid(p->key_id, uuid);
    char hex[2 * kTagSize + 1];
    envelope::hex_encode(envelope::ByteView(p->tag, kTagSize), hex);
    PG_RETURN_CSTRING(psprintf("%s/%s/%d/%s", uuid,
                               normalization_name(static_cast<Normalization>(p->normalization)),
                               p->bits, hex));
}

// envelope.tag_probe(value, key, normalization, bits): the query side (search privilege).
ENVELOPE_SQL_FUNCTION(envelope_tag_probe) {
    text *value = PG_GETARG_TEXT_PP(0);
    const char *key = text_arg(fcinfo, 1);
    const Normalization norm = parse_normalization(text_arg(fcinfo, 2));
    const int bits = checked_bits(PG_GETARG_INT32(3));
    auto *out = static_cast<bytea *>(palloc0(VARHDRSZ + sizeof(ProbeData)));
    SET_VARSIZE(out, VARHDRSZ + sizeof(ProbeData));
    auto *p = reinterpret_cast<ProbeData *>(VARDATA(out));
    p->format = 1;
    p->normalization = static_cast<uint8>(norm);
    p->bits = static_cast<uint8>(bits);
    Normalized n = normalize(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value), norm);
    envelope::DekId id;
    index_tag_by_name(key, SearchCheck::required, norm, n.data, n.len, p->tag, &id);
    release(n);
    memcpy(p->key_id, id.data(), sizeof p->key_id);
    PG_RETURN_BYTEA_P(out);
}

ENVELOPE_SQL_FUNCTION(envelope_tag_probe_hash) {
    const ProbeData *p = probe_of(PG_GETARG_BYTEA_PP(0));
    PG_RETURN_UINT32(tag_hash(p->tag, p->bits));
}

// encrypted_text = tag_probe: the index condition, rechecked on every row the index returns.
ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_eq_probe) {
    bytea *stored = PG_GETARG_BYTEA_PP(0);
    const ProbeData *p = probe_of(PG_GETARG_BYTEA_PP(1));
    envelope::DekId id;
    memcpy(id.data(), p->key_id, sizeof p->key_id);
    const auto norm = static_cast<Normalization>(p->normalization);
    struct varlena *plain = open_text_for_tag(reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)),
                                              VARSIZE_ANY_EXHDR(stored));
    Normalized n = normalize(VARDATA(plain), VARSIZE(plain) - VARHDRSZ, norm);
    uint8 tag[kTagSize];
    index_tag_by_id(id, SearchCheck::required, norm, n.data, n.len, tag);
    release(n);
    wipe_varlena(plain);
    PG_RETURN_BOOL(tags_equal(tag, p->tag));
}

namespace {

bool plaintext_equals(FunctionCallInfo fcinfo) {
    bytea *stored = PG_GETARG_BYTEA_PP(0);
    text *probe = PG_GETARG_TEXT_PP(1);
    struct varlena *plain = open_value(reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)),
                                       VARSIZE_ANY_EXHDR(stored), PayloadKind::text, nullptr);
    const size_t len = VARSIZE(plain) - VARHDRSZ;
    const bool equal =
        len == VARSIZE_ANY_EXHDR(probe) && memcmp(VARDATA(plain), VARDATA_ANY(probe), len) == 0;
    wipe_varlena(plain);
    return equal;
}

}  // namespace

// encrypted_text = text: the plaintext equals the text, byte for byte (decrypt privilege).
ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_eq_text) {
    PG_RETURN_BOOL(plaintext_equals(fcinfo));
}

ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_ne_text) {
    PG_RETURN_BOOL(!plaintext_equals(fcinfo));
}

// envelope.matches(value, probe, normalization): equal once both are normalised.
ENVELOPE_SQL_FUNCTION(envelope_matches) {
    bytea *stored = PG_GETARG_BYTEA_PP(0);
    text *probe = PG_GETARG_TEXT_PP(1);
    const Normalization norm = parse_normalization(text_arg(fcinfo, 2));
    struct varlena *plain = open_value(reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)),
                                       VARSIZE_ANY_EXHDR(stored), PayloadKind::text, nullptr);
    Normalized a = normalize(VARDATA(plain), VARSIZE(plain) - VARHDRSZ, norm);
    Normalized b = normalize(VARDATA_ANY(probe), VARSIZE_ANY_EXHDR(probe), norm);
    const bool equal = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    release(a);
    release(b);
    wipe_varlena(plain);
    PG_RETURN_BOOL(equal);
}

namespace {

bytea *tag_bytea(const uint8 tag[kTagSize]) {
    auto *out = static_cast<bytea *>(palloc(VARHDRSZ + kTagSize));
    SET_VARSIZE(out, VARHDRSZ + kTagSize);
    memcpy(VARDATA(out), tag, kTagSize);
    return out;
}

}  // namespace

// envelope.blind_tag(encrypted_text, key, normalization): full-length tag of a stored value
// (search privilege), for unique btree indexes.
ENVELOPE_SQL_FUNCTION(envelope_blind_tag_value) {
    const char *key = text_arg(fcinfo, 1);
    const Normalization norm = parse_normalization(text_arg(fcinfo, 2));
    uint8 tag[kTagSize];
    value_tag(PG_GETARG_BYTEA_PP(0), key, SearchCheck::required, norm, tag);
    PG_RETURN_BYTEA_P(tag_bytea(tag));
}

// envelope.blind_tag(text, key, normalization): the same tag of a plaintext (search privilege).
ENVELOPE_SQL_FUNCTION(envelope_blind_tag_text) {
    text *value = PG_GETARG_TEXT_PP(0);
    const char *key = text_arg(fcinfo, 1);
    const Normalization norm = parse_normalization(text_arg(fcinfo, 2));
    Normalized n = normalize(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value), norm);
    uint8 tag[kTagSize];
    index_tag_by_name(key, SearchCheck::required, norm, n.data, n.len, tag, nullptr);
    release(n);
    PG_RETURN_BYTEA_P(tag_bytea(tag));
}

namespace {

List *qualified(const char *name) {
    return list_make2(makeString(pstrdup("envelope")), makeString(pstrdup(name)));
}

Node *index_condition(SupportRequestIndexCondition *req) {
    if (req->indexarg != 0) return nullptr;  // the encrypted column comes first
    const Oid family = get_opfamily_oid(HASH_AM_OID, qualified("blind_ops"), true);
    if (!OidIsValid(family) || req->opfamily != family) return nullptr;
    List *args = nullptr;
    bool exact_only = false;  // = works with any normalisation; matches() needs the index's
    Node *wanted_normalization = nullptr;
    if (IsA(req->node, OpExpr)) {
        args = castNode(OpExpr, req->node)->args;
        if (list_length(args) != 2) return nullptr;
        exact_only = true;
    } else if (IsA(req->node, FuncExpr)) {
        args = castNode(FuncExpr, req->node)->args;
        if (list_length(args) != 3) return nullptr;
        wanted_normalization = static_cast<Node *>(lthird(args));
    } else {
        return nullptr;
    }
    Node *indexed = static_cast<Node *>(linitial(args));
    Node *probe = static_cast<Node *>(lsecond(args));
    if (contain_volatile_functions(probe) ||
        bms_is_member(req->index->rel->relid, pull_varnos(req->root, probe)))
        return nullptr;
    if (req->index->opclassoptions == nullptr) return nullptr;
    const auto *o =
        reinterpret_cast<const BlindOptions *>(req->index->opclassoptions[req->indexcol]);
    const char *key = key_option(o);
    const auto norm = static_cast<Normalization>(o->normalization);
    if (!exact_only) {
        if (!IsA(wanted_normalization, Const) || castNode(Const, wanted_normalization)->constisnull)
            return nullptr;
        char *wanted = TextDatumGetCString(castNode(Const, wanted_normalization)->constvalue);
        if (strcmp(wanted, normalization_name(norm)) != 0) return nullptr;
    }
    Oid argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, INT4OID};
    const Oid probe_fn = LookupFuncName(qualified("tag_probe"), 4, argtypes, true);
    if (!OidIsValid(probe_fn)) return nullptr;
    const Oid probe_type = get_func_rettype(probe_fn);
    const Oid op = OpernameGetOprid(qualified("="), exprType(indexed), probe_type);
    if (!OidIsValid(op)) return nullptr;
    Node *key_const = reinterpret_cast<Node *>(
        makeConst(TEXTOID, -1, DEFAULT_COLLATION_OID, -1, CStringGetTextDatum(key), false, false));
    Node *norm_const = reinterpret_cast<Node *>(
        makeConst(TEXTOID, -1, DEFAULT_COLLATION_OID, -1,
                  CStringGetTextDatum(normalization_name(norm)), false, false));
    Node *bits_const = reinterpret_cast<Node *>(
        makeConst(INT4OID, -1, InvalidOid, 4, Int32GetDatum(o->bits), false, true));
    Expr *call = reinterpret_cast<Expr *>(makeFuncExpr(
        probe_fn, probe_type, list_make4(copyObjectImpl(probe), key_const, norm_const, bits_const),
        InvalidOid, DEFAULT_COLLATION_OID, COERCE_EXPLICIT_CALL));
    Expr *cond = make_opclause(op, BOOLOID, false, static_cast<Expr *>(copyObjectImpl(indexed)),
                               call, InvalidOid, InvalidOid);
    set_opfuncid(castNode(OpExpr, cond));
    // Lossy: the index finds rows with the same (truncated) tag; the original condition is
    // kept as a filter, so rows are equal in plaintext, not just in tag.
    req->lossy = true;
    return reinterpret_cast<Node *>(list_make1(cond));
}

}  // namespace

// Planner support of `encrypted_text = text` and envelope.matches(): turns them into a
// condition on an envelope.blind_ops index of the column, when there is one.
ENVELOPE_SQL_FUNCTION(envelope_blind_support) {
    Node *raw = reinterpret_cast<Node *>(PG_GETARG_POINTER(0));
    if (!IsA(raw, SupportRequestIndexCondition)) PG_RETURN_POINTER(nullptr);
    PG_RETURN_POINTER(index_condition(reinterpret_cast<SupportRequestIndexCondition *>(raw)));
}
