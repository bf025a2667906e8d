#!/bin/sh
# The HPET probes' recordings (RECIPE.md, "The HPET's ..."): see record_probes.sh.
exec sh "$(dirname "$0")/record_probes.sh" hpet32 hpet_period hpet_oneshot
