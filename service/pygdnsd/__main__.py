from pygdnsd.cli.gdnsd import main

raise SystemExit(main())
