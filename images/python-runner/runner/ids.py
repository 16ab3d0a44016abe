"""Who runs as which uid in the container.

Under runc the container runs as the session's uid, and the supervisor, its file-operation
workers and user code all share it: "not dumpable" keeps user code out of the supervisor's
/proc/<pid>/fd and away from ptrace. gVisor does not apply "not dumpable" to /proc/<pid>/fd, so
there the backend starts the container as root with only KILL, SETUID and SETGID (docker-runtime.ts),
and the uids split ("split mode", recognised here as root with a work directory owned by another uid):

- the supervisor stays root, and acts as the session's uid (effective ids only) for what it does
  on the work directory;
- each file-operation worker (forked from it) keeps real and saved uid 0 and takes the session's
  uid as its effective uid, so the files it creates are the session's and its checks are the
  session's; user code cannot signal it, ptrace it or reopen its pipes and sockets;
- the kernel drops to the session's uid for good (setgroups, setresgid, setresuid) before its
  interpreter starts, so everything user code runs is that uid, with no capabilities.
"""

import contextlib
import os

from env import WORKDIR


def _work_owner():
    try:
        st = os.stat(WORKDIR)
    except OSError:
        return None
    return st.st_uid, st.st_gid


class SessionUser:
    def __init__(self):
        owner = _work_owner() if os.getuid() == 0 else None
        self.split = owner is not None and owner[0] != 0
        self.uid, self.gid = owner if self.split else (os.getuid(), os.getgid())

    def init_supervisor(self):
        if self.split:
            os.setgroups([])

    @contextlib.contextmanager
    def acting(self):
        """Effective ids of the session's uid for a while (the real and saved uid stay 0)."""
        if not self.split:
            yield
            return
        os.setegid(self.gid)
        os.seteuid(self.uid)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)

    def act_for_good(self):
        """A file-operation worker: the session's effective ids until it exits."""
        if self.split:
            os.setegid(self.gid)
            os.seteuid(self.uid)

    def become(self):
        """The kernel, before its exec: every id the session's, no way back."""
        if not self.split:
            return
        os.setgroups([])
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)
        if os.getresuid() != (self.uid,) * 3 or os.getresgid() != (self.gid,) * 3 or os.getgroups():
            raise OSError("could not drop to the session's uid")


session_user = SessionUser()
