"""lic: learned image compression for machines and people."""

import warnings

# CompressAI imports torch_geometric, whose import-time torch.jit.script calls warn on every
# `import lic...`; the warning is about their code and says nothing to a lic user.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)
