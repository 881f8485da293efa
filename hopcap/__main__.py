from hopcap.cli import main

main()
