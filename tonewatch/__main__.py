from tonewatch.cli import main

main()
