"""Path parameters shared by the FHIR routes of versions and writes."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

from api.fhir.clinical import KIND_OF

# The clinical types a generic `/fhir/{resource_type}/...` route serves, documented as an enum so
# that the schema does not claim the route for Patient, Practitioner... whose own routes win (a
# type outside it is still answered: 404 unknown_resource_type, by the handler).
ClinicalType = Annotated[str, Parameter(description="a clinical resource type", schema_extra={"enum": sorted(KIND_OF)})]
