// Marks a header as C++-zone: it must never be compiled together with PostgreSQL headers
// inside the core library (the core target does not even have them on its include path).
#pragma once
#if defined(ENVELOPE_CORE_BUILD) && defined(PG_VERSION_NUM)
#error "C++-zone code (src/core) must not include postgres.h"
#endif
