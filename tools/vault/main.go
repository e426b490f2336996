// Command vault is HashiCorp Vault v1.13.0 (MPL-2.0), built from the Go module
// proxy so Writ's integration tests can run a real `vault server -dev`.
// It is Vault's own main: nothing here is Writ code.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
