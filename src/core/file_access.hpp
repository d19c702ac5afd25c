// How layerfreeze opens a file (docs/SECURITY.md): one policy for every file a user or another
// file names — a rules file and what it `extends:`, an expert config, a lock and the strategy it
// names, a model, an index's shards, a family file, an FTS schedule.
//
// A path is resolved once with every symlink followed; that resolved path is what is checked
// (inside the allowed folders, when the file was named by another file) and what is opened. Only
// a regular file is read (never a FIFO, a device or a folder: opening does not block), and its
// size is checked before reading. A failure is one diagnostic naming the file and the reason.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

/// The folders a file named by an untrusted file may lie in: the working directory, the folder
/// `named_by` lies in (the file that names it, as named: a symlink to it does not move it; ""
/// for none), the repository around that folder (the nearest folder above with a .git), and
/// each folder in $LAYERFREEZE_EXTENDS_PATH (colon-separated), each with everything below it.
/// A folder inside a Hugging Face cache (`…/snapshots/REV/`) adds the cache entry above it,
/// whose `blobs/` its files link to. Resolved (symlinks followed).
std::vector<std::filesystem::path> allowed_folders(const std::string& named_by);
/// "a, b, c" for a message.
std::string folders_text(const std::vector<std::filesystem::path>& folders);

struct FileRead {
  std::string what;        // "rules file", "expert config", "lock": how messages name it
  uint64_t max_bytes = 0;  // a larger file is refused before it is read
  /// When set, the resolved file must lie below one of these (resolved) folders.
  const std::vector<std::filesystem::path>* folders = nullptr;
  std::string outside_code = "file-outside";  // the error code when it does not
  std::vector<std::string> outside_notes;     // and its notes (the folders are added)
  SourceLoc at;                               // where the error points ("" file: the file itself)
  // The error codes of a missing, unreadable and too large file (a model's are model-*).
  std::string not_found_code = "file-not-found";
  std::string unreadable_code = "file-unreadable";
  std::string too_large_code = "file-too-large";
};

/// The resolved path of the regular file `path` under `how`, or nullopt after one error
/// (`shown` names the file in it). For readers that read only a part (a safetensors header).
std::optional<std::string> check_file(const std::string& path, const std::string& shown,
                                      const FileRead& how, Diagnostics& diags);

/// Whether `path` (a file or a folder; symlinks followed as far as it exists) lies below
/// `how.folders`; false after one `how.outside_code` error. For a path another file names and
/// something else opens later (a lock's model folder).
bool check_inside(const std::string& path, const std::string& shown, const FileRead& how,
                  Diagnostics& diags);

/// The text of the regular file `path` under `how`, read through its resolved path; nullopt
/// after one error. `resolved`, when given, receives the path read.
std::optional<std::string> read_file(const std::string& path, const std::string& shown,
                                     const FileRead& how, Diagnostics& diags,
                                     std::string* resolved = nullptr);

/// Writes `text` to `path` atomically: into a new file in the same folder, flushed to disk, then
/// renamed over `path` — a failure leaves what was at `path` as it was. False with `error` set
/// (the path and the reason) when any step fails.
bool write_file_atomic(const std::string& path, const std::string& text, std::string* error);

}  // namespace layerfreeze
