"""ovs3d_ros: open-vocabulary 3D segmentation distilled into an incrementally trained NeRF.

The name is shared by two halves: the hand-written code (``ovs3d_ros.core``, ``.data``, ``.ros``,
``.cli``) and the message/service modules rosidl generates (``ovs3d_ros.msg``, ``ovs3d_ros.srv``).
In a colcon install both live in one directory; in the development venv the generated half sits in
site-packages and the checkout is installed editable. ``extend_path`` merges every ``ovs3d_ros``
directory on ``sys.path`` so both layouts import the same way. Keep this file free of imports that
need the generated modules: it is also installed over rosidl's empty ``__init__.py``.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
