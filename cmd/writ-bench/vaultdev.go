package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// vaultDev is a "vault server -dev" child process: in-memory storage, no
// TLS, no audit device. It is killed by Close.
type vaultDev struct {
	Addr      string // http://127.0.0.1:PORT
	RootToken string
	Version   string
	PID       int
	Root      *api.Client

	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

// startVaultDev runs bin as a dev server on a free loopback port with a
// clean environment (no VAULT_* variables, HOME=dir) and waits until it is
// unsealed and active.
func startVaultDev(ctx context.Context, bin, dir string) (_ *vaultDev, err error) {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("vault version: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()

	b := make([]byte, 16)
	_, _ = rand.Read(b)
	v := &vaultDev{
		Addr:      "http://127.0.0.1:" + strconv.Itoa(port),
		RootToken: "root-" + hex.EncodeToString(b),
		Version:   strings.TrimSpace(string(out)),
		exited:    make(chan struct{}),
	}
	if v.log, err = os.Create(filepath.Join(dir, "vault.log")); err != nil {
		return nil, err
	}
	v.cmd = exec.Command(bin, "server", "-dev",
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port),
		"-dev-root-token-id="+v.RootToken,
		"-dev-no-store-token")
	v.cmd.Env = []string{"HOME=" + dir, "TMPDIR=" + dir}
	v.cmd.Dir = dir
	v.cmd.Stdout, v.cmd.Stderr = v.log, v.log
	if err := v.cmd.Start(); err != nil {
		v.log.Close()
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	v.PID = v.cmd.Process.Pid
	go func() { _ = v.cmd.Wait(); close(v.exited) }()
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	if v.Root, err = vaultClient(v.Addr, v.RootToken); err != nil {
		return nil, err
	}
	if err := v.waitHealthy(ctx, time.Minute); err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, v.log.Name())
	}
	return v, nil
}

func (v *vaultDev) waitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		h, err := v.Root.Sys().HealthWithContext(hctx)
		cancel()
		if err == nil && h.Initialized && !h.Sealed && !h.Standby {
			return nil
		}
		select {
		case <-v.exited:
			return errors.New("vault exited before becoming healthy")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("vault not healthy after %s", timeout)
}

// Close kills the server.
func (v *vaultDev) Close() {
	_ = v.cmd.Process.Kill()
	<-v.exited
	v.log.Close()
}

// vaultClient returns an API client for addr and token configured like
// internal/vault's: no VAULT_* environment, no proxy, no retries, at most 8
// idle connections kept to Vault.
func vaultClient(addr, token string) (*api.Client, error) {
	c, err := api.NewClient(&api.Config{
		Address: addr,
		HttpClient: &http.Client{Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: 10 * time.Second,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
		}},
		MaxRetries: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}})
	c.ClearNamespace()
	c.SetWrappingLookupFunc(func(string, string) string { return "" })
	c.SetToken(token)
	return c, nil
}
