from goalwatch.serving import run_service
from services.goals.app import SERVICE

run_service(SERVICE)
