// Marks a core header as internal: it may declare throwing code, so the PostgreSQL zone must
// never see it (src/pg has only src/core/api on its include path; this catches the rest).
#pragma once
#if defined(ENVELOPE_PG_ZONE) || defined(PG_VERSION_NUM)
#error "internal C++-zone header: src/pg may include only the noexcept headers of src/core/api"
#endif
