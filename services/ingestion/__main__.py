from goalwatch.serving import run_service
from services.ingestion.app import SERVICE

run_service(SERVICE)
