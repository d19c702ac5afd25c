#include "cli/git_source.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

extern char** environ;

namespace layerfreeze::cli {

namespace {

struct Output {
  int status = -1;  // exit code; -1: could not run
  std::string out, err;
};

// Runs argv (no shell), capturing stdout and stderr.
Output run(const std::vector<std::string>& argv) {
  Output o;
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0) return o;
  if (pipe(err_pipe) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return o;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  posix_spawn_file_actions_addclose(&fa, out_pipe[0]);
  posix_spawn_file_actions_addclose(&fa, err_pipe[0]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc == 0) {
    // stderr is small (git's messages); read stdout to its end first.
    char buf[65536];
    for (ssize_t n; (n = read(out_pipe[0], buf, sizeof buf)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      o.out.append(buf, static_cast<size_t>(n));
    }
    for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      o.err.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    o.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  } else {
    o.err = std::string("cannot run git: ") + std::strerror(rc);
  }
  close(out_pipe[0]);
  close(err_pipe[0]);
  return o;
}

std::string first_line(const std::string& s) {
  std::string l = s.substr(0, s.find('\n'));
  return l.empty() ? "no message" : l;
}

}  // namespace

bool is_git_spec(const std::string& spec) {
  if (spec.rfind("preset:", 0) == 0) return false;
  const size_t colon = spec.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= spec.size()) return false;
  std::error_code ec;
  return !std::filesystem::exists(spec, ec);  // a file whose name has a colon is a file
}

std::optional<Strategy> load_git_strategy(const std::string& spec, const std::string& section,
                                          Diagnostics& d, SourceTexts& texts) {
  const size_t colon = spec.find(':');
  const std::string rev = spec.substr(0, colon), path = spec.substr(colon + 1);
  const SourceLoc at{spec, 0, 0};
  Output inside = run({"git", "rev-parse", "--show-toplevel"});
  if (inside.status != 0) {
    d.error("git-source",
            "'" + spec + "' names a file at a git revision, but " +
                (inside.status == -1 ? "git cannot be run (" + first_line(inside.err) + ")"
                                     : "the current directory is not inside a git repository"),
            at, {"run layerfreeze inside the repository, or give a path or preset:NAME"});
    return std::nullopt;
  }
  Output commit = run({"git", "rev-parse", "--verify", "--quiet", rev + "^{commit}"});
  if (commit.status != 0) {
    d.error("git-source", "'" + rev + "' is not a revision of this repository", at,
            {"a commit, branch or tag: HEAD~1, main, v1.2, a1b2c3d"});
    return std::nullopt;
  }
  // Every file — the one named and what it extends — is read from the revision's tree, inside
  // the repository only; paths relative to the current directory, as the other side's are.
  const std::string commit_id = first_line(commit.out);
  const std::filesystem::path top =
      std::filesystem::weakly_canonical(first_line(inside.out)).lexically_normal();
  const std::filesystem::path cwd = std::filesystem::weakly_canonical(".").lexically_normal();
  Strategy::Files files;
  files.roots = {top.string()};
  files.label_prefix = rev + ":";
  files.read = [=](const std::string& path, const std::string& shown,
                   Diagnostics& diags) -> std::optional<std::string> {
    const std::filesystem::path p(path);
    const std::string rel = p.lexically_relative(top).generic_string();
    if (rel.empty() || rel.rfind("..", 0) == 0) {
      diags.error("git-source", "'" + shown + "' is outside the repository", at);
      return std::nullopt;
    }
    const std::string object = commit_id + ":" + rel;
    const std::string here = p.lexically_relative(cwd).generic_string();  // as a user types it
    Output size = run({"git", "cat-file", "-s", object});
    if (size.status != 0) {
      diags.error("git-source", "'" + here + "' does not exist at revision " + rev, at,
                  {"git says: " + first_line(size.err)});
      return std::nullopt;
    }
    if (std::stoull("0" + first_line(size.out)) > Strategy::Files::kMaxFileBytes) {
      diags.error("file-too-large",
                  "rules file '" + shown + "' at revision " + rev + " is " + first_line(size.out) +
                      " bytes; the limit is " + std::to_string(Strategy::Files::kMaxFileBytes),
                  at);
      return std::nullopt;
    }
    Output show = run({"git", "cat-file", "blob", object});
    if (show.status != 0) {
      diags.error("git-source", "'" + here + "' is not a file at revision " + rev, at,
                  {"git says: " + first_line(show.err)});
      return std::nullopt;
    }
    return show.out;
  };
  std::filesystem::path file(path);
  if (file.is_relative()) file = cwd / file;
  // The spec names the file in messages: "HEAD~1:freeze.yaml:3:5: error: ...".
  return Strategy::load(file.lexically_normal().string(), spec, files, d, section, &texts);
}

}  // namespace layerfreeze::cli
