from livecap.cli import main

main()
