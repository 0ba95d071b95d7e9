from goalwatch.serving import run_service
from services.evaluator.app import SERVICE

run_service(SERVICE)
