"""Start-up hook of yolo-necks, imported by ``yolo_necks_autoload.pth`` in every Python process.

It must stay tiny: it imports neither torch nor ultralytics. It only installs an import hook that waits for
``ultralytics.nn.tasks`` to be imported; then it wraps the entry points that need our blocks (``parse_model``,
``torch_safe_load`` and ``_initialize_yolo_model``, which reads the YAML before parsing it) with thin functions
that call ``yolo_necks.register()`` on first use. Because the hook lives in a ``.pth`` file, it also reaches the
worker processes ultralytics spawns for DDP training.

Set ``YOLO_NECKS_AUTOLOAD=0`` to switch it off.
"""

import os
import sys

TARGET = "ultralytics.nn.tasks"


def enabled():
    """Return True unless ``YOLO_NECKS_AUTOLOAD`` is set to 0/false/no/off."""
    return os.environ.get("YOLO_NECKS_AUTOLOAD", "1").strip().lower() not in {"0", "false", "no", "off"}


def _lazy(name, tasks):
    """Wrap ``tasks.<name>`` so that the first call registers the plugin, then delegates."""
    original = getattr(tasks, name, None)
    if original is None or getattr(original, "_yolo_necks_lazy", False):
        return

    def wrapper(*args, **kwargs):
        try:
            import yolo_necks

            yolo_necks.register()
        except Exception as e:  # never break stock ultralytics because of the plugin
            if not isinstance(e, ImportError):
                raise
        # register() may have replaced tasks.<name>; call whatever is current (not this wrapper)
        current = getattr(tasks, name)
        return (original if current is wrapper else current)(*args, **kwargs)

    wrapper._yolo_necks_lazy = True
    wrapper.__wrapped__ = original
    wrapper.__name__ = getattr(original, "__name__", name)
    wrapper.__doc__ = getattr(original, "__doc__", None)
    setattr(tasks, name, wrapper)


def _patch(tasks):
    for name in ("parse_model", "torch_safe_load", "_initialize_yolo_model"):
        _lazy(name, tasks)


class _Finder:
    """A meta-path finder that only watches for ``ultralytics.nn.tasks`` and then removes itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TARGET:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        loader.exec_module = exec_and_patch
        uninstall()
        return spec


_FINDER = _Finder()


def install():
    """Install the hook (idempotent); patch at once if ultralytics.nn.tasks is already imported."""
    if TARGET in sys.modules:
        _patch(sys.modules[TARGET])
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall():
    """Remove the import hook (already-applied wrappers stay)."""
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


if enabled():
    install()
