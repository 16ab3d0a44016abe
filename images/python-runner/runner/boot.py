"""Start-up of the supervisor process: hardening, the matplotlib cache, the protocol's stdout."""

import ctypes
import os
import shutil

from env import MPL_CACHE, WORKDIR, log

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def harden():
    libc = ctypes.CDLL(None, use_errno=True)
    # Not dumpable: user code (same uid) cannot open /proc/<supervisor>/fd/* or ptrace us.
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log("prctl(PR_SET_DUMPABLE) failed:", os.strerror(ctypes.get_errno()))
    # Orphans of user code are re-parented to us, so we can reap and sweep them.
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log("prctl(PR_SET_CHILD_SUBREAPER) failed:", os.strerror(ctypes.get_errno()))


def copy_mpl_cache():
    target = os.environ.get("MPLCONFIGDIR")
    if not target or not os.path.isdir(MPL_CACHE):
        return
    try:
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(MPL_CACHE):
            src, dst = os.path.join(MPL_CACHE, name), os.path.join(target, name)
            if os.path.isfile(src) and not os.path.exists(dst):
                shutil.copyfile(src, dst)
    except OSError as exc:
        log(f"cannot copy the matplotlib cache: {exc}")


def main(supervisor_class):
    harden()
    # Events get a private copy of stdout; fd 1 itself now points at stderr, so a stray print
    # or library message can never corrupt the protocol stream.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    copy_mpl_cache()
    os.chdir(WORKDIR)
    supervisor_class(out_fd).serve()
