"""Writes the seccomp profile of session containers (packages/core/src/runtime/session-seccomp.json).

It is the engine's default profile minus system calls a session never needs and that widen the
host kernel's attack surface: io_uring (its own syscall path, outside seccomp's view of what it
submits), userfaultfd (a staple of kernel exploits), perf_event_open, the key management calls and
bpf. Take the default profile of the installed engine's version, e.g. for Docker 20.10.24:

    git show v20.10.24:profiles/seccomp/default.json > default.json   # in a moby/moby clone
    python3 make-profile.py default.json 20.10.24 > ../../../packages/core/src/runtime/session-seccomp.json
"""

import json
import sys

DENIED = {"io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "perf_event_open",
          "keyctl", "add_key", "request_key", "bpf"}


def main(path, version):
    profile = json.load(open(path))
    kept = []
    for rule in profile["syscalls"]:
        if rule["action"] != "SCMP_ACT_ALLOW":
            kept.append(rule)  # errno rules (e.g. clone3 -> ENOSYS) stay as they are
            continue
        names = [n for n in rule["names"] if n not in DENIED]
        if names:
            kept.append({**rule, "names": names})
    profile["syscalls"] = kept
    allowed = {n for r in kept if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert not allowed & DENIED
    out = {"comment": f"sessionbox: Docker {version}'s default seccomp profile minus {', '.join(sorted(DENIED))} "
                      "(images/python-runner/seccomp/make-profile.py)", **profile}
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
