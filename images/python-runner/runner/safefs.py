"""Symlink-proof access to the session's work directory (see PROTOCOL.md, "File operations").

Used by fileops.py (one `docker exec` per file operation) and by the supervisor (which lists
the files a run created or changed). Every path is resolved one component at a time, each
opened relative to its parent's fd with O_NOFOLLOW, so nothing here ever follows a symlink or
leaves the work directory; only regular files are read or written.
"""

import errno
import json
import os
import stat

from errors import ErrorCode, FileError

FILE_CHUNK = 1 << 20
DEFAULT_MAX_FILE_BYTES = 64 << 20
MAX_LISTED_FILES = 10_000
MAX_LIST_BYTES = 8 << 20  # of paths in one file_list answer (255-byte names, 100 levels deep: 25 KB each)
MAX_WALK_DEPTH = 200

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def mtime_ms(st):
    return st.st_mtime_ns // 1_000_000


def int_field(req, name, default, minimum=1):
    value = req.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise FileError(ErrorCode.BAD_REQUEST, f"{name} must be a number >= {minimum}")
    return int(value)


def split_path(path):
    if not isinstance(path, str) or not path:
        raise FileError(ErrorCode.INVALID_PATH, "path must be a non-empty string")
    if "\x00" in path:
        raise FileError(ErrorCode.INVALID_PATH, "path contains a NUL byte")
    if path.startswith("/"):
        raise FileError(ErrorCode.INVALID_PATH, "path must be relative to /work")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise FileError(ErrorCode.INVALID_PATH, "path must not contain '..'")
    if not parts:
        raise FileError(ErrorCode.INVALID_PATH, "path names no file")
    return parts


def os_error(exc, path):
    if exc.errno == errno.ENOENT:
        return FileError(ErrorCode.NOT_FOUND, f"{path}: no such file or directory")
    if exc.errno == errno.ELOOP:
        return FileError(ErrorCode.INVALID_PATH, f"{path}: symbolic links are not allowed")
    if exc.errno == errno.EEXIST:
        return FileError(ErrorCode.EXISTS, f"{path}: already exists")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return FileError(ErrorCode.TOO_LARGE, f"{path}: no space left in the work directory")
    return FileError(ErrorCode.BAD_REQUEST, f"{path}: {exc.strerror or exc}")


def encode_event(event):
    """One protocol line: compact JSON (UTF-8; ASCII escapes when a name holds lone surrogates)."""
    try:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(event, separators=(",", ":")).encode("ascii")
    return line + b"\n"


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ChunkSink:
    """Write-only file for tarfile that hands the archive to `send` in FILE_CHUNK pieces while
    it grows."""

    def __init__(self, send, limit):
        self.send = send
        self.limit = limit
        self.size = 0
        self.buf = bytearray()

    def write(self, data):
        self.size += len(data)
        if self.size > self.limit:
            raise FileError(ErrorCode.TOO_LARGE, f"the archive is larger than {self.limit} bytes")
        self.buf += data
        while len(self.buf) >= FILE_CHUNK:
            self.send(bytes(self.buf[:FILE_CHUNK]))
            del self.buf[:FILE_CHUNK]
        return len(data)

    def tell(self):
        return self.size

    def flush(self):
        pass

    def finish(self):
        if self.buf:
            self.send(bytes(self.buf))
            self.buf.clear()


def open_dir_nofollow(name, dir_fd):
    """os.open(name, DIR_FLAGS, dir_fd=dir_fd), and the directory opened is the entry itself:
    gVisor (runsc 2022-12) follows a symlink to a directory despite O_NOFOLLOW when O_DIRECTORY
    is set, so the entry's lstat must be a directory with the same device and inode."""
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        fst = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino):
        os.close(fd)
        raise OSError(errno.ELOOP, "symbolic links are not allowed", name)
    return fd


class WorkDir:
    """The work directory: lookups, and the file operations of PROTOCOL.md."""

    def __init__(self, root):
        self.root = root

    # -- lookups --------------------------------------------------------------------------

    def open_root(self):
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def open_dir(self, parts, create=False):
        fd = self.open_root()
        try:
            for i, name in enumerate(parts):
                where = "/".join(parts[: i + 1])
                try:
                    sub = open_dir_nofollow(name, fd)
                except FileNotFoundError:
                    if not create:
                        raise FileError(ErrorCode.NOT_FOUND, f"{where}: no such directory")
                    try:
                        os.mkdir(name, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    except OSError as exc:
                        raise os_error(exc, where)
                    sub = self._open_existing_dir(name, fd, where)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise os_error(exc, where)
                    sub = self._open_existing_dir(name, fd, where)
                os.close(fd)
                fd = sub
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _open_existing_dir(name, dir_fd, where):
        try:
            return open_dir_nofollow(name, dir_fd)
        except OSError as exc:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                raise os_error(exc, where)
            if stat.S_ISLNK(st.st_mode):
                raise FileError(ErrorCode.INVALID_PATH, f"{where}: symbolic links are not allowed")
            raise FileError(ErrorCode.INVALID_PATH, f"{where}: not a directory")

    def open_file(self, path, flags, create=False):
        """Opens a regular file; returns (fd, stat, normalized path)."""
        parts = split_path(path)
        rel = "/".join(parts)
        dfd = self.open_dir(parts[:-1], create=create)
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                         0o644, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                raise FileError(ErrorCode.INVALID_PATH, f"{rel}: not a regular file")
            raise os_error(exc, rel)
        finally:
            os.close(dfd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise FileError(ErrorCode.INVALID_PATH, f"{rel}: not a regular file")
        return fd, st, rel

    def walk(self):
        """Yields (relative path, stat, parent dir fd, name) for directories and regular files,
        depth first, sorted by name; never follows symlinks."""
        root = self.open_root()
        stack = [(root, "", None)]
        try:
            while stack:
                fd, prefix, entries = stack[-1]
                if entries is None:
                    try:
                        with os.scandir(fd) as it:
                            entries = iter(sorted(it, key=lambda e: e.name))
                    except OSError:
                        entries = iter(())
                    stack[-1] = (fd, prefix, entries)
                entry = next(entries, None)
                if entry is None:
                    os.close(fd)
                    stack.pop()
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                rel = prefix + entry.name
                if stat.S_ISREG(st.st_mode):
                    yield rel, st, fd, entry.name
                elif stat.S_ISDIR(st.st_mode):
                    yield rel, st, fd, entry.name
                    if len(stack) <= MAX_WALK_DEPTH:
                        try:
                            stack.append((open_dir_nofollow(entry.name, fd), rel + "/", None))
                        except OSError:
                            pass
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def regular_files(self, limit=MAX_LISTED_FILES):
        files = {}
        for rel, st, _, _ in self.walk():
            if stat.S_ISREG(st.st_mode):
                files[rel] = st
                if limit is not None and len(files) >= limit:
                    break
        return files

    def snapshot(self):
        return {rel: (st.st_size, st.st_mtime_ns) for rel, st in self.regular_files().items()}

    # -- operations (each returns the fields of its final event) --------------------------

    def check_quota(self, cap, replacing, extra):
        """Refuses (`quota_exceeded`) when the files not in `replacing`, plus `extra` bytes,
        would take more than `cap` bytes."""
        keep = {"/".join(split_path(p)) for p in replacing}
        total = extra + sum(st.st_size for rel, st in self.regular_files(None).items() if rel not in keep)
        if total > cap:
            raise FileError(ErrorCode.QUOTA_EXCEEDED, f"the session's files would take {total} bytes, over its {cap} byte cap")

    def write(self, path, src, size, limit):
        """Replaces the file at `path` (parent directories are made) with exactly `size` bytes
        read from the binary stream `src`. A file this call created is removed if it fails."""
        if size > limit:
            raise FileError(ErrorCode.TOO_LARGE, f"the file would be larger than {limit} bytes")
        try:
            fd, _, rel = self.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, create=True)
            created = True
        except FileError as exc:
            if exc.code != ErrorCode.EXISTS:
                raise
            fd, _, rel = self.open_file(path, os.O_WRONLY | os.O_CREAT, create=True)
            created = False
        try:
            os.ftruncate(fd, 0)
            buf = bytearray(min(FILE_CHUNK, max(size, 1)))
            left = size
            while left:
                n = src.readinto(memoryview(buf)[: min(left, len(buf))])
                if not n:
                    raise FileError(ErrorCode.BAD_REQUEST, f"{rel}: the upload ended after {size - left} of {size} bytes")
                write_all(fd, memoryview(buf)[:n])
                left -= n
            st = os.fstat(fd)
        except BaseException as exc:
            os.close(fd)
            if created:
                try:
                    self.delete(rel)
                except FileError:
                    pass
            raise os_error(exc, rel) if isinstance(exc, OSError) else exc
        os.close(fd)
        return {"path": rel, "size": st.st_size, "mtimeMs": mtime_ms(st), "created": created}

    def read(self, path, limit, send):
        """Hands the file at `path` to `send` in pieces of at most FILE_CHUNK bytes."""
        fd, st, rel = self.open_file(path, os.O_RDONLY)
        try:
            if st.st_size > limit:
                raise FileError(ErrorCode.TOO_LARGE, f"{rel} is {st.st_size} bytes, over the {limit} byte limit")
            size = 0
            while size <= limit:
                chunk = os.read(fd, FILE_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:  # it grew while being read
                    raise FileError(ErrorCode.TOO_LARGE, f"{rel} is over the {limit} byte limit")
                send(chunk)
        except OSError as exc:
            raise os_error(exc, rel)
        finally:
            os.close(fd)
        return {"path": rel, "size": size, "mtimeMs": mtime_ms(st)}

    def list(self):
        files = self.regular_files(MAX_LISTED_FILES + 1)
        listed, size = [], 0
        for rel, st in sorted(files.items())[:MAX_LISTED_FILES]:
            size += len(json.dumps(rel)) + 64  # the path as JSON escapes it, and its fields
            if size > MAX_LIST_BYTES:
                break
            listed.append({"path": rel, "size": st.st_size, "mtimeMs": mtime_ms(st)})
        return {"files": listed, "truncated": len(listed) < len(files)}

    def delete(self, path):
        """Removes a file, or a directory with everything in it."""
        import shutil  # only here: with what it imports, it is the slowest part of starting fileops.py

        parts = split_path(path)
        rel = "/".join(parts)
        dfd = self.open_dir(parts[:-1])
        try:
            name = parts[-1]
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise FileError(ErrorCode.INVALID_PATH, f"{rel}: symbolic links are not allowed")
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=dfd)
            else:
                os.unlink(name, dir_fd=dfd)
        except OSError as exc:
            raise os_error(exc, rel)
        finally:
            os.close(dfd)
        return {"path": rel, "size": st.st_size, "mtimeMs": mtime_ms(st)}

    def archive(self, send, limit):
        """A .tar.gz of the directory (regular files and directories, no links), handed to
        `send` in pieces as it is built."""
        import tarfile  # only here, like shutil above

        sink = ChunkSink(send, limit)
        count = 0
        with tarfile.open(fileobj=sink, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for rel, st, dfd, name in self.walk():
                info = tarfile.TarInfo(rel)
                info.mode = st.st_mode & 0o777
                info.mtime = st.st_mtime
                if stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                    continue
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
                except OSError:
                    continue  # vanished or replaced by a link since the directory was read
                with os.fdopen(fd, "rb") as f:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode):
                        continue
                    info.size = fst.st_size
                    try:
                        tar.addfile(info, f)
                    except OSError as exc:
                        raise FileError(ErrorCode.BAD_REQUEST, f"{rel} changed while being archived: {exc}")
                count += 1
        sink.finish()
        return {"path": ".", "size": sink.size, "mtimeMs": None, "files": count}

    def extract(self, data):
        """Unpacks a .tar.gz made by `archive`. Every entry is checked before anything is
        written."""
        import io
        import tarfile
        import zlib

        try:
            tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise FileError(ErrorCode.BAD_REQUEST, f"not a .tar.gz archive: {exc}")
        plan = []
        for member in members:
            try:
                parts = split_path(member.name)
            except FileError as exc:
                raise FileError(ErrorCode.INVALID_PATH, f"archive entry {member.name!r}: {exc.message}")
            if not (member.isreg() or member.isdir()):
                raise FileError(ErrorCode.INVALID_PATH, f"archive entry {member.name!r}: "
                                "only regular files and directories are allowed")
            plan.append((parts, member))
        total = count = 0
        for parts, member in plan:
            if member.isdir():
                os.close(self.open_dir(parts, create=True))
                continue
            fd, _, rel = self.open_file("/".join(parts), os.O_WRONLY | os.O_CREAT, create=True)
            try:
                os.ftruncate(fd, 0)
                src = tar.extractfile(member)
                while True:
                    chunk = src.read(FILE_CHUNK)
                    if not chunk:
                        break
                    write_all(fd, chunk)
                    total += len(chunk)
                os.fchmod(fd, (member.mode & 0o755) | 0o600)
                os.utime(fd, (member.mtime, member.mtime))
            except OSError as exc:
                raise os_error(exc, rel)
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise FileError(ErrorCode.BAD_REQUEST, f"corrupt archive: {exc}")
            finally:
                os.close(fd)
            count += 1
        return {"path": ".", "size": total, "mtimeMs": None, "files": count}
