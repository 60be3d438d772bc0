"""gateway.southbound: notified actuator changes become device commands."""

from __future__ import annotations

import pytest

from gateway.profiles import Profiles
from gateway.southbound import Actuators


def test_a_changed_actuator_of_a_device_entity_becomes_a_command() -> None:
    """A Streetlight entity urn:ngsi-ld:Streetlight:<device> with a new powerState gives a
    command for <device> (the part after the type, colons and all)."""
    actuators = Actuators(Profiles())
    entity = {"id": "urn:ngsi-ld:Streetlight:lamp:7", "type": "Streetlight", "powerState": "on"}
    assert actuators.commands(entity) == ("streetlight", "lamp:7", {"powerState": "on"})


@pytest.mark.parametrize(
    "entity_id",
    [
        "urn:ngsi-ld:StreetlightGroup:lamp-7",  # another type's id
        "urn:ngsi-ld:Device:lamp-7",
        "urn:ngsi-ld:Streetlight:",  # no device id at all
        "lamp-7",
    ],
)
def test_an_id_not_of_the_entity_type_gives_no_command(entity_id: str) -> None:
    """Only ids of the form urn:ngsi-ld:<the profile's type>:<device> name a device."""
    actuators = Actuators(Profiles())
    entity = {"id": entity_id, "type": "Streetlight", "powerState": "on"}
    assert actuators.commands(entity) is None
