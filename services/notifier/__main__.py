from goalwatch.serving import run_service
from services.notifier.app import SERVICE

run_service(SERVICE)
