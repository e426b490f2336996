// Package depcheck holds a test that enforces Writ's dependency direction
// (see the README's layout): the domain imports only the standard library,
// the broker never imports the adapters it is given, and nothing imports cmd/.
package depcheck
