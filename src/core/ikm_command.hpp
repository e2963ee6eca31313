// Runs envelope.ikm_command (no shell) and turns its output into input keying material.
#pragma once
#include "internal_only.hpp"
#include "secure_buffer.hpp"

#include <cstddef>

namespace envelope {

constexpr size_t kIkmMinBytes = 32;     // at least a 256-bit secret
constexpr size_t kIkmMaxOutput = 4096;  // bytes of stdout read; more is an error
constexpr size_t kIkmMessageSize = 256;

// Runs `command_line`: an absolute path, optionally followed by arguments split on spaces and
// tabs (no quoting, no shell, no variable expansion). Refuses a relative path, a file that is
// not a regular executable, not owned by root or by this process's user, or writable by group
// or others, and a directory holding it that is writable by group or others.
// stdin is /dev/null, stdout is read into protected memory (at most kIkmMaxOutput bytes),
// stderr is counted and discarded (it may hold secrets); the command runs in its own process
// group, which is SIGKILLed and reaped when it runs past timeout_ms.
// Success: exit status 0 and stdout is lowercase hex of at least kIkmMinBytes bytes, with at
// most one trailing newline; ikm receives the decoded bytes. Failure: false and a message that
// names the command's path (never its arguments or output).
bool run_ikm_command(const char *command_line, int timeout_ms, SecureBuffer &ikm,
                     char message[kIkmMessageSize]) noexcept;

// Parses command output (see above) into ikm. False with a message on any defect.
bool parse_ikm_output(const uint8_t *out, size_t len, SecureBuffer &ikm,
                      char message[kIkmMessageSize]) noexcept;

}  // namespace envelope
