// Command paygate is the whole payment gateway in one binary; see README.md.
package main

import (
	"os"

	"paygate/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
