"""Progress bars inside a Jupyter kernel without ipywidgets: console bars, no TqdmWarning."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What tqdm.autonotebook sees inside a Jupyter kernel: ipykernel's shell module is loaded and
# get_ipython() is a ZMQInteractiveShell. ipywidgets is not installed.
KERNEL = textwrap.dedent(
    """
    import sys, types, warnings
    warnings.simplefilter("always")  # shown on stderr (an error would be caught by tqdm)
    sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
    import IPython
    class ZMQInteractiveShell:
        pass
    IPython.get_ipython = lambda: ZMQInteractiveShell()
    """
)


def run_in_kernel(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KERNEL + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_tqdm_auto_warns_in_a_kernel_without_ipywidgets():
    """The situation being fixed: a bare `import tqdm.auto` warns there."""
    result = run_in_kernel("import tqdm.auto\n")
    assert result.returncode == 0 and "IProgress not found" in result.stderr


def test_console_tqdm_auto_gives_libraries_the_console_bar_without_warning():
    result = run_in_kernel(
        """
        from ctrip.progress import console_tqdm_auto
        console_tqdm_auto()
        from tqdm.auto import tqdm
        import tqdm as package
        assert issubclass(tqdm, package.std.tqdm) and "notebook" not in tqdm.__module__, tqdm
        """
    )
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr


def test_project_modules_do_not_import_tqdm_auto():
    result = run_in_kernel(
        """
        import ctrip.data.synth.card, ctrip.data.synth.generate, ctrip.io.importer
        import ctrip.analysis.interpret, ctrip.analysis.figures
        assert "tqdm.autonotebook" not in sys.modules
        """
    )
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
