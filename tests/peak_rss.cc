// Runs a command and writes its peak resident memory (wait4's ru_maxrss, in
// KiB) to a file: tests that bound a client's memory run the client through
// this small program (harness RunMeasuringMemory). A child forked straight
// from a test process would not do: what fork copied of the test process
// counts toward the child's peak until it calls exec.
// Usage: peak_rss FILE PROGRAM [ARG…]; exits as PROGRAM did (128 + N when
// signal N ended it, 127 when it could not be started).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: peak_rss FILE PROGRAM [ARG...]\n");
    return 2;
  }
  pid_t pid = ::fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    ::execv(argv[2], argv + 2);
    ::_exit(127);
  }
  int status = 0;
  rusage usage{};
  while (::wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) return 127;
  }
  std::FILE* out = std::fopen(argv[1], "w");
  if (out == nullptr) return 127;
  std::fprintf(out, "%ld\n", usage.ru_maxrss);
  if (std::fclose(out) != 0) return 127;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 127;
}
