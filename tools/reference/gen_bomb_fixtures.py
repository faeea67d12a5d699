#!/usr/bin/env python3
"""Writes the decompression-bomb fixtures of tests/test_reliability.cpp (issue 20, item 8) from
tests/fixtures/torch/lm_zip.pt (a real torch.save zip checkpoint); needs only the standard library.

  bomb_storage.pt  the first tensor storage record DEFLATE-compressed and padded with 64 MiB of
                   zeros: it declares far more bytes than the storage (numel x element size) needs
  bomb_pickle.pt   data.pkl DEFLATE-compressed and padded to 300 MiB (> the 256 MiB a compressed
                   pickle may take)

  python3 tools/reference/gen_bomb_fixtures.py
"""
import pathlib
import zipfile

HERE = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "torch"
SRC = HERE / "lm_zip.pt"


def rewrite(dst, pick, pad):
    with zipfile.ZipFile(SRC) as zin, zipfile.ZipFile(dst, "w") as zout:
        done = False
        for info in zin.infolist():
            data = zin.read(info.filename)
            if not done and pick(info.filename):
                zout.writestr(info.filename, data + b"\0" * pad, compress_type=zipfile.ZIP_DEFLATED,
                              compresslevel=9)
                done = True
            else:
                zout.writestr(info, data, compress_type=zipfile.ZIP_STORED)
        assert done, "no record picked"


rewrite(HERE / "bomb_storage.pt", lambda n: "/data/" in n and not n.endswith(".pkl"), 64 << 20)
rewrite(HERE / "bomb_pickle.pt", lambda n: n.endswith("/data.pkl"), 300 << 20)

# untrusted_global.pt (item 20): lm_zip.pt's state dict with one more entry, "evil", built by
# numpy.testing._private.utils.runstring("print(1)") — a callable that runs code in Python but is
# not on the pickle reader's list of known-dangerous names. `inspect` must name it.
with zipfile.ZipFile(SRC) as zin, zipfile.ZipFile(HERE / "untrusted_global.pt", "w") as zout:
    for info in zin.infolist():
        data = zin.read(info.filename)
        if info.filename.endswith("/data.pkl"):
            head = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01("
            assert data.startswith(head)
            evil = (b"X\x04\x00\x00\x00evil" + b"cnumpy.testing._private.utils\nrunstring\n" +
                    b"X\x08\x00\x00\x00print(1)\x85R")
            data = head + evil + data[len(head):]
        zout.writestr(info, data, compress_type=zipfile.ZIP_STORED)
