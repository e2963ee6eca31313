// Runs the IKM command without a shell and parses its hex output into protected memory.
#include "ikm_command.hpp"
#include "hex.hpp"
#include "wipe.hpp"

#include <cerrno>
#include <cstdarg>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace envelope {

namespace {

constexpr size_t kMaxArguments = 32;

bool failf(char message[kIkmMessageSize], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool failf(char message[kIkmMessageSize], const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(message, kIkmMessageSize, fmt, ap);
    va_end(ap);
    return false;
}

int64_t monotonic_ms() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// Splits on spaces and tabs; no quoting.
std::vector<std::string> split_words(const char *line) {
    std::vector<std::string> words;
    std::string cur;
    for (const char *p = line; *p; ++p) {
        if (*p == ' ' || *p == '\t') {
            if (!cur.empty()) words.push_back(std::move(cur));
            cur.clear();
        } else {
            cur.push_back(*p);
        }
    }
    if (!cur.empty()) words.push_back(std::move(cur));
    return words;
}

bool owner_ok(const struct stat &st) noexcept {
    return st.st_uid == 0 || st.st_uid == geteuid();
}

// The command runs as the server user: anyone who can change it (or swap it, through its
// directory) would run code as that user and read the IKM.
bool check_executable(const std::string &path, std::string &resolved,
                      char message[kIkmMessageSize]) {
    const char *p = path.c_str();
    if (path.empty() || path[0] != '/')
        return failf(message, "envelope.ikm_command must start with an absolute path");
    struct stat st {};
    if (stat(p, &st) != 0)
        return failf(message, "envelope.ikm_command \"%s\" cannot be used: %s", p,
                     std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        return failf(message, "envelope.ikm_command \"%s\" is not a regular file", p);
    if (!owner_ok(st))
        return failf(message,
                     "envelope.ikm_command \"%s\" must be owned by root or by the server user", p);
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return failf(message, "envelope.ikm_command \"%s\" is writable by group or others", p);
    if ((st.st_mode & S_IXUSR) == 0 && st.st_uid == geteuid())
        return failf(message, "envelope.ikm_command \"%s\" is not executable", p);
    char real[PATH_MAX];
    if (realpath(p, real) == nullptr)
        return failf(message, "envelope.ikm_command \"%s\" cannot be used: %s", p,
                     std::strerror(errno));
    resolved = real;
    std::string dir = resolved.substr(0, resolved.rfind('/'));
    if (dir.empty()) dir = "/";
    struct stat dst {};
    if (stat(dir.c_str(), &dst) != 0)
        return failf(message, "envelope.ikm_command \"%s\": its directory cannot be used: %s", p,
                     std::strerror(errno));
    if (!owner_ok(dst) || (dst.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return failf(message,
                     "envelope.ikm_command \"%s\" lies in a directory that is writable by group "
                     "or others or not owned by root or the server user",
                     p);
    return true;
}

void kill_and_reap(pid_t pid) noexcept {
    kill(-pid, SIGKILL);  // the whole process group the command may have started
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

struct Pipe {
    int fd[2] = {-1, -1};
    ~Pipe() { close_both(); }
    void close_end(int i) noexcept {
        if (fd[i] >= 0) close(fd[i]);
        fd[i] = -1;
    }
    void close_both() noexcept {
        close_end(0);
        close_end(1);
    }
};

bool run(const char *command_line, int timeout_ms, SecureBuffer &ikm,
         char message[kIkmMessageSize]) {
    if (command_line == nullptr || command_line[0] == '\0')
        return failf(message, "envelope.ikm_command is not set");
    std::vector<std::string> words = split_words(command_line);
    if (words.empty()) return failf(message, "envelope.ikm_command is not set");
    if (words.size() > kMaxArguments)
        return failf(message, "envelope.ikm_command has more than %zu words", kMaxArguments);
    const char *path = words[0].c_str();
    std::string resolved;
    if (!check_executable(words[0], resolved, message)) return false;

    std::vector<char *> argv;
    for (std::string &w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    char env_path[] = "PATH=/usr/local/bin:/usr/bin:/bin";
    char *envp[] = {env_path, nullptr};

    Pipe out, err;
    if (pipe2(out.fd, O_CLOEXEC) != 0 || pipe2(err.fd, O_CLOEXEC) != 0)
        return failf(message, "envelope.ikm_command \"%s\": could not create a pipe: %s", path,
                     std::strerror(errno));

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out.fd[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err.fd[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // the server's files stay closed
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM})
        sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, resolved.c_str(), &actions, &attr, argv.data(), envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    out.close_end(1);
    err.close_end(1);
    if (rc != 0)
        return failf(message, "envelope.ikm_command \"%s\" could not be started: %s", path,
                     std::strerror(rc));

    const int64_t deadline = monotonic_ms() + timeout_ms;
    SecureBuffer output(kIkmMaxOutput + 1);
    size_t got = 0;
    size_t stderr_bytes = 0;
    bool too_long = false;
    while (out.fd[0] >= 0 || err.fd[0] >= 0) {
        const int64_t left = deadline - monotonic_ms();
        if (left <= 0) break;
        pollfd fds[2] = {{out.fd[0], POLLIN, 0}, {err.fd[0], POLLIN, 0}};
        const int n = poll(fds, 2, static_cast<int>(left));
        if (n < 0 && errno != EINTR) break;
        if (n <= 0) continue;
        if (fds[0].revents != 0) {
            ssize_t r = read(out.fd[0], output.data() + got, output.size() - got);
            if (r > 0) got += static_cast<size_t>(r);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) out.close_end(0);
            if (got > kIkmMaxOutput) {
                too_long = true;
                break;
            }
        }
        if (fds[1].revents != 0) {
            uint8_t scratch[512];
            ssize_t r = read(err.fd[0], scratch, sizeof scratch);
            if (r > 0) stderr_bytes += static_cast<size_t>(r);
            secure_zero(scratch, sizeof scratch);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) err.close_end(0);
        }
    }
    out.close_both();
    err.close_both();
    if (too_long) {
        kill_and_reap(pid);
        return failf(message, "envelope.ikm_command \"%s\" printed more than %zu bytes", path,
                     kIkmMaxOutput);
    }
    // Both pipes are closed (or the time is up): wait for the exit until the deadline. The
    // child stays a zombie (WNOWAIT) until the rest of its process group is killed, so the
    // group id cannot have been reused when it is signalled.
    for (;;) {
        siginfo_t info{};
        const int w = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
        if (w == 0 && info.si_pid == pid) break;
        if (w < 0 && errno != EINTR) {
            kill_and_reap(pid);
            return failf(message, "envelope.ikm_command \"%s\": waiting for it failed: %s", path,
                         std::strerror(errno));
        }
        if (monotonic_ms() >= deadline) {
            kill_and_reap(pid);
            return failf(message,
                         "envelope.ikm_command \"%s\" did not finish within %d ms "
                         "(envelope.ikm_timeout) and was killed",
                         path, timeout_ms);
        }
        timespec pause{0, 5 * 1000 * 1000};
        nanosleep(&pause, nullptr);
    }
    kill(-pid, SIGKILL);  // whatever the command left running in its group
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status))
        return failf(message, "envelope.ikm_command \"%s\" was killed by signal %d", path,
                     WTERMSIG(status));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return failf(message,
                     "envelope.ikm_command \"%s\" exited with status %d (%zu bytes on stderr, "
                     "not logged)",
                     path, WIFEXITED(status) ? WEXITSTATUS(status) : -1, stderr_bytes);
    char parse_message[kIkmMessageSize];
    if (!parse_ikm_output(output.data(), got, ikm, parse_message))
        return failf(message, "envelope.ikm_command \"%s\" %s", path, parse_message);
    return true;
}

}  // namespace

bool parse_ikm_output(const uint8_t *out, size_t len, SecureBuffer &ikm,
                      char message[kIkmMessageSize]) noexcept {
    try {
        if (len > 0 && out[len - 1] == '\n') --len;  // one trailing newline
        if (len == 0) return failf(message, "printed no IKM");
        for (size_t i = 0; i < len; ++i) {
            const uint8_t c = out[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                return failf(message,
                             "printed something other than lowercase hex (%zu bytes, not shown)",
                             len);
        }
        if (len % 2 != 0) return failf(message, "printed an odd number of hex digits");
        if (len / 2 < kIkmMinBytes)
            return failf(message, "printed %zu bytes of IKM; at least %zu are needed", len / 2,
                         kIkmMinBytes);
        ikm.resize(len / 2);
        if (!hex_decode(reinterpret_cast<const char *>(out), len, ikm.data(), len / 2)) {
            ikm.release();
            return failf(message, "printed IKM that does not decode");
        }
        return true;
    } catch (...) {
        return failf(message, "out of protected memory for the IKM");
    }
}

bool run_ikm_command(const char *command_line, int timeout_ms, SecureBuffer &ikm,
                     char message[kIkmMessageSize]) noexcept {
    try {
        return run(command_line, timeout_ms, ikm, message);
    } catch (const std::bad_alloc &) {
        return failf(message, "out of memory running envelope.ikm_command");
    } catch (...) {
        return failf(message, "unexpected error running envelope.ikm_command");
    }
}

}  // namespace envelope
