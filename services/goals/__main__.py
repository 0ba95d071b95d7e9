from services.goals.app import main

main()
