"""prep.quiet: TensorFlow's start-up banner left out of stderr, and nothing else."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prep import quiet

ROOT = Path(__file__).resolve().parents[1]

# What ``import tensorflow`` + a first op wrote on this project's CPU machine (TensorFlow 2.21).
CAPTURED = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796044953.521986   23709 port.cc:153] oneDNN custom operations are on. You may see slightly different \
numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the \
environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796044953.522293   23709 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796044953.566335   23709 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available \
CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, rebuild \
TensorFlow with the appropriate compiler flags.
/x/site-packages/somewhere.py:3: DeprecationWarning: a warning of the import
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796044955.033325   23709 port.cc:153] oneDNN custom operations are on. You may see slightly different \
numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the \
environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796044955.033962   23709 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
E0000 00:00:1796044956.593620   23709 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call \
to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1796044956.593620   23709 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call \
to cuInit: CUDA_ERROR_OUT_OF_MEMORY (2)
W0000 00:00:1796044956.600000   23709 some_op.cc:10] something else TensorFlow says
To enable the following instructions: AVX2 (not after the cpu_feature_guard line: kept)
"""


def test_only_the_known_banner_lines_are_left_out():
    kept = quiet.without_banner(CAPTURED).splitlines()
    assert kept == [
        "/x/site-packages/somewhere.py:3: DeprecationWarning: a warning of the import",
        "E0000 00:00:1796044956.593620   23709 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: CUDA_ERROR_OUT_OF_MEMORY (2)",
        "W0000 00:00:1796044956.600000   23709 some_op.cc:10] something else TensorFlow says",
        "To enable the following instructions: AVX2 (not after the cpu_feature_guard line: kept)",
    ]
    assert quiet.without_banner("") == "" and quiet.without_banner("no newline") == "no newline"


FAKE_TENSORFLOW = '''
import os, sys
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1.2   7 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\\n")
os.write(2, b"a line of the C++ side that is not the banner\\n")
print("a line of the Python side", file=sys.stderr)

class config:
    @staticmethod
    def list_physical_devices():
        os.write(2, b"E0000 00:00:1.3   7 cuda_platform.cc:52] failed call to cuInit: INTERNAL: UNKNOWN ERROR (303)\\n")
        return []
'''


def run_with_fake_tensorflow(tmp_path, code, **env):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update(env, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=environ,
                          cwd=tmp_path)


def test_the_import_is_captured_at_the_file_descriptor_and_the_rest_written_back(tmp_path):
    r = run_with_fake_tensorflow(tmp_path, """
        import os, sys
        print("before", file=sys.stderr, flush=True)
        from prep.quiet import import_tensorflow
        tf = import_tensorflow()
        assert import_tensorflow() is tf  # once imported: returned as it is
        print("after", os.environ["TF_CPP_MIN_LOG_LEVEL"], file=sys.stderr)
        os.write(2, b"fd 2 is back\\n")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["before", "a line of the C++ side that is not the banner",
                                     "a line of the Python side", "after 2", "fd 2 is back"]


def test_the_users_log_level_is_kept(tmp_path):
    r = run_with_fake_tensorflow(tmp_path, """
        import os
        from prep.quiet import import_tensorflow
        import_tensorflow()
        print(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    """, TF_CPP_MIN_LOG_LEVEL="0")
    assert r.stdout.strip() == "0", r.stderr


def test_commands_that_load_tensorflow_print_no_banner(tmp_path):
    """The real TensorFlow: the reader, a model and train.py's own error, on stderr with nothing else."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("import models, tensorflow as tf; from prep import reader; "
            "m = models.build('So2Sat-ResNet11', {'image': (32, 32, 10)}, 17, 'single_label'); "
            "print(m({'image': tf.zeros([1, 32, 32, 10])}).shape)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "(1, 17)" and r.stderr == "", r.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(
        '{"format": "eorecords-manifest", "dataset": "so2sat_lcz42", "schema": "compact", "bands": [], '
        '"classes": [], "splits": {}}')
    r = subprocess.run([sys.executable, "train.py", "--data_dir", str(tmp_path / "data"), "--out_dir",
                        str(tmp_path / "run"), "--model", "Foo"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: --model Foo: unknown model")
