"""Hash encoding, scene contraction, occupancy grid and the semantic field."""

from ovs3d_ros.core.field.contraction import contract, to_unit_cube, uncontract
from ovs3d_ros.core.field.encodings import HashEncoding
from ovs3d_ros.core.field.field import SemanticField
from ovs3d_ros.core.field.occupancy import OccupancyGrid

__all__ = ["HashEncoding", "OccupancyGrid", "SemanticField", "contract", "to_unit_cube", "uncontract"]
