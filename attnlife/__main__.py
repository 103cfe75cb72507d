from attnlife.cli import main

main()
