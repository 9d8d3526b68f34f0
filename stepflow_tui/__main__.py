from stepflow_tui.cli import main

raise SystemExit(main())
