/** The data sets a <select> offers, refilled from `list` (GET /api/datasets's answer) when a person imports or
 * deletes one, keeping the choice made where it is still offered. */
export function fillDatasets(select, list) {
  const value = select.value;
  select.replaceChildren(...list.map((d) => new Option(d.title ?? d.name, d.name)));
  if (list.some((d) => d.name === value)) select.value = value;
}
