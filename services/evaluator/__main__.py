from services.evaluator.app import main

main()
