// gitserver serves the Git repositories under a directory over Git's smart
// HTTP protocol, read and write, on the loopback interface: Git's own
// git-http-backend behind the standard library's CGI handler. The Flux tests
// (tests/flux/) clone from it with source-controller; hack/plane builds it
// and `hack/plane env` exports its path as STRATA_GITSERVER.
//
//	gitserver -root DIR [-addr 127.0.0.1:0]
//
// The first line on stdout is the base URL (http://127.0.0.1:PORT); the
// repository DIR/site.git is then cloned from http://127.0.0.1:PORT/site.git.
// Each request is logged on stderr.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	root := flag.String("root", "", "the directory whose repositories are served (required)")
	addr := flag.String("addr", "127.0.0.1:0", "the address to listen on")
	flag.Parse()
	if *root == "" {
		log.Fatal("-root is required")
	}
	abs, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		log.Fatalf("git --exec-path: %v (is git installed?)", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		log.Fatalf("no git-http-backend: %v", err)
	}
	handler := &cgi.Handler{
		Path: backend,
		Env: []string{
			"GIT_PROJECT_ROOT=" + abs,
			// Every repository under the root, without a
			// git-daemon-export-ok file in each; pushes need an
			// authenticated user unless receive-pack is enabled.
			"GIT_HTTP_EXPORT_ALL=1",
			"REMOTE_USER=strata-tests",
		},
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("http://%s\n", listener.Addr())
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		handler.ServeHTTP(w, r)
		log.Printf("%s %s?%s (%s)", r.Method, r.URL.Path, r.URL.RawQuery, time.Since(start).Round(time.Millisecond))
	})
	server := &http.Server{Handler: logged, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(server.Serve(listener))
}
