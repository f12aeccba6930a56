from edge_sdk.toolchain.cli import main

raise SystemExit(main())
