#include "core/file_access.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace layerfreeze {

namespace fs = std::filesystem;

namespace {

fs::path resolved_or_normal(const fs::path& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(p, ec);
  return ec ? p.lexically_normal() : r;
}

bool below(const fs::path& file, const fs::path& folder) {
  auto rel = file.lexically_relative(folder);
  return !rel.empty() && rel.native() != ".." && rel.native().rfind("../", 0) != 0;
}

// Why a path cannot be resolved or opened, in words.
std::string reason(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR: return "no such file";
    case ELOOP: return "a symlink loop (or more than 40 links in a row)";
    case EACCES:
    case EPERM: return "permission denied";
    case ENAMETOOLONG: return "the path is too long";
    default: return std::strerror(err);
  }
}

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

bool inside_or_error(const fs::path& resolved, const std::string& shown, const FileRead& how,
                     Diagnostics& diags) {
  if (!how.folders) return true;
  for (const auto& f : *how.folders)
    if (below(resolved, f)) return true;
  auto notes = how.outside_notes;
  notes.insert(notes.begin(), "allowed here: " + folders_text(*how.folders) +
                                  " — each with what is below (symlinks followed)");
  diags.error(how.outside_code,
              how.what + " '" + shown + "' is outside the folders it may be read from",
              how.at.file.empty() ? SourceLoc{shown, 0, 0} : how.at, std::move(notes));
  return false;
}

struct Opened {
  int fd = -1;
  uint64_t size = 0;
  std::string path;
  ~Opened() {
    if (fd >= 0) ::close(fd);
  }
};

bool open_checked(const std::string& path, const std::string& shown, const FileRead& how,
                  Diagnostics& diags, Opened& out) {
  const SourceLoc loc = how.at.file.empty() ? SourceLoc{shown, 0, 0} : how.at;
  std::error_code ec;
  fs::path resolved = fs::canonical(fs::path(path), ec);
  // A path that leads outside is refused as such, whether or not a file is there (no oracle).
  std::error_code ec_abs;
  if (ec && how.folders &&
      !inside_or_error(resolved_or_normal(fs::absolute(path, ec_abs)), shown, how, diags))
    return false;
  if (ec) {
    diags.error(
        ec.value() == ENOENT || ec.value() == ENOTDIR ? how.not_found_code : how.unreadable_code,
        "cannot read " + how.what + " '" + shown + "': " + reason(ec.value()), loc);
    return false;
  }
  if (!inside_or_error(resolved, shown, how, diags)) return false;
  // Non-blocking: opening a FIFO must not wait for a writer. O_NOFOLLOW: the resolved path has
  // no symlink left; one that appeared since is refused (ELOOP).
  out.fd = ::open(resolved.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
  if (out.fd < 0) {
    diags.error(how.unreadable_code,
                "cannot read " + how.what + " '" + shown + "': " + reason(errno), loc);
    return false;
  }
  struct stat st {};
  if (::fstat(out.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    diags.error("file-not-regular",
                "cannot read " + how.what + " '" + shown + "': it is " + kind_of(st.st_mode) +
                    ", not a file",
                loc);
    return false;
  }
  out.size = static_cast<uint64_t>(st.st_size);
  if (how.max_bytes > 0 && out.size > how.max_bytes) {
    diags.error(how.too_large_code,
                how.what + " '" + shown + "' is " + std::to_string(out.size) +
                    " bytes; the limit is " + std::to_string(how.max_bytes),
                loc);
    return false;
  }
  out.path = resolved.string();
  return true;
}

}  // namespace

std::vector<fs::path> allowed_folders(const std::string& named_by) {
  std::vector<fs::path> out;
  std::error_code ec;
  out.push_back(resolved_or_normal(fs::current_path(ec)));
  fs::path dir = out.front();
  if (!named_by.empty()) {
    dir = resolved_or_normal(fs::absolute(named_by, ec).parent_path());
    out.push_back(dir);
    // A Hugging Face cache: models--org--name/snapshots/REV/x links into models--org--name/blobs.
    if (dir.parent_path().filename() == "snapshots") out.push_back(dir.parent_path().parent_path());
  }
  for (auto d = dir; !d.empty() && d != d.root_path(); d = d.parent_path())
    if (fs::exists(d / ".git", ec)) {
      out.push_back(d);
      break;
    }
  if (const char* extra = std::getenv("LAYERFREEZE_EXTENDS_PATH")) {
    std::string list = extra;
    for (size_t b = 0, e; b <= list.size(); b = e + 1) {
      e = list.find(':', b);
      if (e == std::string::npos) e = list.size();
      if (e > b) out.push_back(resolved_or_normal(fs::absolute(list.substr(b, e - b), ec)));
    }
  }
  // Each once, in order (the working directory is often the repository too).
  std::vector<fs::path> unique;
  for (auto& f : out)
    if (std::find(unique.begin(), unique.end(), f) == unique.end()) unique.push_back(std::move(f));
  return unique;
}

std::string folders_text(const std::vector<fs::path>& folders) {
  std::string s;
  for (const auto& f : folders) s += (s.empty() ? "" : ", ") + f.string();
  return s;
}

bool check_inside(const std::string& path, const std::string& shown, const FileRead& how,
                  Diagnostics& diags) {
  std::error_code ec;
  return inside_or_error(resolved_or_normal(fs::absolute(path, ec)), shown, how, diags);
}

std::optional<std::string> check_file(const std::string& path, const std::string& shown,
                                      const FileRead& how, Diagnostics& diags) {
  Opened f;
  if (!open_checked(path, shown, how, diags, f)) return std::nullopt;
  return f.path;
}

std::optional<std::string> read_file(const std::string& path, const std::string& shown,
                                     const FileRead& how, Diagnostics& diags,
                                     std::string* resolved) {
  Opened f;
  if (!open_checked(path, shown, how, diags, f)) return std::nullopt;
  // Read what fstat said, and at most that much: a file that grows meanwhile is cut there.
  std::string text(static_cast<size_t>(f.size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(f.fd, text.data() + got, text.size() - got);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      diags.error(how.unreadable_code,
                  "cannot read " + how.what + " '" + shown + "': " + reason(errno),
                  how.at.file.empty() ? SourceLoc{shown, 0, 0} : how.at);
      return std::nullopt;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  if (resolved) *resolved = f.path;
  return text;
}

bool write_file_atomic(const std::string& path, const std::string& text, std::string* error) {
  auto fail = [&](const std::string& why) {
    if (error) *error = "cannot write '" + path + "': " + why;
    return false;
  };
  const fs::path target(path);
  if (target.filename().empty()) return fail("not a file name");
  // Only a regular file is replaced: never a device (/dev/full), a FIFO or a folder — a rename
  // over /dev/null would replace the device itself.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return fail("it is " + kind_of(st.st_mode) + ", not a file");
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmp = (dir / ("." + target.filename().string() + ".layerfreeze-XXXXXX")).string();
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) return fail(reason(errno));
  auto abandon = [&](const std::string& why) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return fail(why);
  };
  // The permissions a new file gets (mkstemp makes it 0600).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  if (::fchmod(fd, 0666 & ~mask) != 0) return abandon(reason(errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return abandon(n < 0 ? reason(errno) : "nothing written");
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) return abandon(reason(errno));
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return fail(reason(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return fail(reason(err));
  }
  return true;
}

}  // namespace layerfreeze
