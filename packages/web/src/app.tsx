/** The page's shell: which page the address's hash names. Each page is its own module under pages/. */
export function App() {
  return (
    <main>
      <h1>scoped</h1>
    </main>
  );
}
