"""A passthrough FUSE filesystem without fallocate, for tests/shared_storage.rs.

Usage: /usr/bin/python3 nofalloc_fs.py ROOT MOUNTPOINT   (runs in the foreground)

Every call is passed to ROOT, except fallocate, which this class does not define: fusepy then
answers EOPNOTSUPP, as NFS before 4.2 does. Locks are left to the kernel (no lock method), so
they hold within the mount. Debian's python3-fusepy (module `fusepy`); run with /usr/bin/python3.
"""

import errno
import os
import sys

from fusepy import FUSE, FuseOSError, Operations


class NoFallocate(Operations):
    def __init__(self, root):
        self.root = os.path.realpath(root)

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def access(self, path, mode):
        if not os.access(self._full(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        return os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        return os.chown(self._full(path), uid, gid)

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink",
                "st_size", "st_uid", "st_blocks", "st_ino")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        yield "."
        yield ".."
        yield from os.listdir(self._full(path))

    def readlink(self, path):
        return os.readlink(self._full(path))

    def mknod(self, path, mode, dev):
        return os.mknod(self._full(path), mode, dev)

    def rmdir(self, path):
        return os.rmdir(self._full(path))

    def mkdir(self, path, mode):
        return os.mkdir(self._full(path), mode)

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def unlink(self, path):
        return os.unlink(self._full(path))

    def symlink(self, target, source):
        # fusepy: the new name first, what it points to second.
        return os.symlink(source, self._full(target))

    def rename(self, old, new):
        return os.rename(self._full(old), self._full(new))

    def link(self, target, source):
        # fusepy: the new name first, the existing file second.
        return os.link(self._full(source), self._full(target))

    def utimens(self, path, times=None):
        return os.utime(self._full(path), times)

    # O_DIRECT is dropped on the way down: fusepy's buffers are not aligned for it.
    def open(self, path, flags):
        return os.open(self._full(path), flags & ~os.O_DIRECT)

    def create(self, path, mode, fi=None):
        return os.open(self._full(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, length, offset, fh):
        return os.pread(fh, length, offset)

    def write(self, path, buf, offset, fh):
        return os.pwrite(fh, buf, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._full(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return os.close(fh)

    def fsync(self, path, fdatasync, fh):
        return os.fsync(fh)


if __name__ == "__main__":
    root, mountpoint = sys.argv[1], sys.argv[2]
    FUSE(NoFallocate(root), mountpoint, foreground=True, allow_other=True, nothreads=False)
