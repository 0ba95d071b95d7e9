from goalwatch.serving import run_service
from services.console.app import SERVICE

run_service(SERVICE)
