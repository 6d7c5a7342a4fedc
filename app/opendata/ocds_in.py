"""OCDS 1.1 packages in: their contracts as purchase orders (``ancla import --format ocds``).

In. :func:`orders_from_ocds` maps the contracts of a release or record package
to purchase-order dicts, reporting every contract (and every release without
contracts) that cannot be mapped with its JSON pointer and the reason, so the
count of contracts in equals orders mapped plus problems reported.

What Ancla itself publishes is :mod:`app.opendata.mapping`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, NamedTuple

from pydantic import ValidationError

from app.opendata.mapping import RUC_SCHEME, JsonObject
from app.records.purchase_order import SCHEMA, PurchaseOrder, check_ruc
from app.records.vocabulary import json_kind
from app.services.ingest import validation_errors

__all__ = ["MissingTax", "OcdsItem", "orders_from_ocds"]

_CENTS: Final = Decimal("0.01")


# --- In: OCDS packages -> purchase orders ---------------------------------------------------

MissingTax = Literal["report", "zero"]


class OcdsItem(NamedTuple):
    """One contract of the input (or a release without any): an order, or why not.

    ``pointer`` is the JSON pointer (RFC 6901) of the contract, or of the
    release or record when the problem is there. Exactly one of ``order``
    and ``problem`` is set; ``order`` is a valid PurchaseOrder as a dict.
    """

    pointer: str
    order: JsonObject | None
    problem: str | None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _identifier(value: object) -> str | None:
    """OCDS ids may be strings or integers; booleans are neither."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _decimal(value: object, where: str) -> Decimal:
    """An OCDS number as an exact Decimal (a float through its shortest repr)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"{where} must be a number, not {json_kind(value)}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{where} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{where} must be finite")
    if number < 0:
        raise ValueError(f"{where} is negative ({value}); a purchase order's amounts are not")
    return number


def _money(number: Decimal, where: str) -> str:
    if number != number.quantize(_CENTS):
        # Rounding would record an amount the publisher did not state.
        raise ValueError(f"{where} {number} has more than 2 decimals")
    return f"{number.quantize(_CENTS):f}"


def _unit_price(number: Decimal) -> str:
    # Céntimos at least ("24.9" -> "24.90"); finer catalogue prices kept as they are.
    if number == number.quantize(_CENTS):
        return f"{number.quantize(_CENTS):f}"
    return f"{number.normalize():f}"


def _quantity(number: Decimal) -> str:
    if number == number.to_integral_value():
        return str(int(number))
    return f"{number.normalize():f}"


class _Release:
    """One release (or compiled release) being mapped, with its lookups built once.

    Raises ValueError when the release links several framework agreements.
    """

    def __init__(self, data: Mapping[str, Any], pointer: str) -> None:
        self.data = data
        self.pointer = pointer
        self.parties: dict[str, tuple[str, Mapping[str, Any]]] = {}
        parties = self.data.get("parties")
        for index, party in enumerate(parties if isinstance(parties, list) else []):
            if isinstance(party, Mapping) and (party_id := _identifier(party.get("id"))):
                self.parties.setdefault(party_id, (f"{self.pointer}/parties/{index}", party))
        self.awards: dict[str, tuple[str, Mapping[str, Any]]] = {}
        awards = self.data.get("awards")
        for index, award in enumerate(awards if isinstance(awards, list) else []):
            if isinstance(award, Mapping) and (award_id := _identifier(award.get("id"))):
                self.awards.setdefault(award_id, (f"{self.pointer}/awards/{index}", award))
        self.buyer = self._buyer()
        self.framework = self._framework()
        tender = self.data.get("tender")
        self.procurement_method = (
            _text(tender.get("procurementMethodDetails")) if isinstance(tender, Mapping) else None
        )

    def organization(self, ref: object, role: str, where: str) -> JsonObject | str:
        """The ``{"ruc", "name"}`` of an organization reference, or why it has none."""
        if not isinstance(ref, Mapping):
            return f"{role} ({where}) is {json_kind(ref)}, not an organization reference"
        ref_id = _identifier(ref.get("id"))
        if ref_id is not None and ref_id in self.parties:
            where, org = self.parties[ref_id]
        elif "identifier" in ref:
            org = ref  # OCDS 1.0: the organization itself, not a reference
        elif ref_id is not None:
            return f"{role} ({where}) id {ref_id!r} matches no entry in parties"
        else:
            return f"{role} ({where}) has neither an id nor an identifier"
        return _party(org, role, where)

    def _buyer(self) -> JsonObject | str:
        if "buyer" in self.data:
            return self.organization(self.data["buyer"], "buyer", f"{self.pointer}/buyer")
        buyers = [
            party_id
            for party_id, (_, party) in self.parties.items()
            if isinstance(party.get("roles"), list) and "buyer" in party["roles"]
        ]
        if len(buyers) == 1:
            return self.organization({"id": buyers[0]}, "buyer", self.parties[buyers[0]][0])
        if not buyers:
            return "no buyer: the release has no buyer field and no party with role buyer"
        return f"{len(buyers)} parties have role buyer and no buyer field says which one"

    def _framework(self) -> str | None:
        related = self.data.get("relatedProcesses")
        names = {
            _text(process.get("title")) or _text(process.get("identifier"))
            for process in (related if isinstance(related, list) else [])
            if isinstance(process, Mapping)
            and isinstance(process.get("relationship"), list)
            and "framework" in process["relationship"]
        }
        names.discard(None)
        if len(names) > 1:
            raise ValueError(
                f"relatedProcesses ({self.pointer}/relatedProcesses) links {len(names)}"
                " framework agreements; an order is under at most one"
            )
        return names.pop() if names else None


def _party(org: Mapping[str, Any], role: str, where: str) -> JsonObject | str:
    identifiers = [org.get("identifier")]
    additional = org.get("additionalIdentifiers")
    if isinstance(additional, list):
        identifiers.extend(additional)
    rucs = [i for i in identifiers if isinstance(i, Mapping) and i.get("scheme") == RUC_SCHEME]
    if not rucs:
        main = org.get("identifier")
        if not isinstance(main, Mapping):
            return f"{role} ({where}) has no identifier; a purchase order needs its RUC"
        scheme = main.get("scheme")
        shown = _identifier(main.get("id"))
        if not _text(scheme):
            return f"{role} ({where}) identifier {shown!r} has no scheme; expected {RUC_SCHEME}"
        return f"{role} ({where}) identifier scheme is {scheme!r}, not {RUC_SCHEME}"
    ruc = _identifier(rucs[0].get("id"))
    try:
        check_ruc(ruc or "")
    except ValueError as exc:
        return f"{role} ({where}) {RUC_SCHEME} identifier {ruc!r} is not a valid RUC: {exc}"
    name = _text(org.get("name")) or _text(rucs[0].get("legalName"))
    if name is None:
        return f"{role} ({where}) has no name"
    return {"ruc": ruc, "name": name}


def _currency(value: object, where: str, problems: list[str]) -> str | None:
    currency = _text(value.get("currency")) if isinstance(value, Mapping) else None
    if isinstance(value, Mapping) and currency is None:
        problems.append(f"{where}/currency is missing")
    return currency


def _amounts(
    value: object, where: str, missing_tax: MissingTax, problems: list[str]
) -> tuple[str, str, str] | None:
    """(subtotal, tax, total) from a contract value, or None with the problems."""
    if not isinstance(value, Mapping):
        problems.append(f"contract has no value ({where})")
        return None
    try:
        total = _decimal(value.get("amount"), f"{where}/amount")
        total_text = _money(total, f"{where}/amount")
        net_value, gross_value = value.get("amountNet"), value.get("amountGross")
        if net_value is not None or gross_value is not None:
            net = _decimal(net_value, f"{where}/amountNet")
            gross = _decimal(gross_value, f"{where}/amountGross")
            if gross != total:
                raise ValueError(f"{where}/amountGross {gross} differs from amount {total}")
            if net > gross:
                raise ValueError(f"{where}/amountNet {net} exceeds amountGross {gross}")
            tax = gross - net
        elif missing_tax == "zero":
            net, tax = total, Decimal(0)
        else:
            raise ValueError(
                f"{where} has no tax breakdown (amountNet, amountGross): the order's"
                " subtotal and IGV are unknown"
            )
        amounts = (
            _money(net, f"{where}/amountNet"),
            _money(tax, "the tax (amountGross - amountNet)"),
            total_text,
        )
    except ValueError as exc:
        problems.append(str(exc))
        return None
    return amounts


def _items(
    items: object, where: str, currency: str | None, problems: list[str]
) -> list[JsonObject] | None:
    if items is None or items == []:
        return None
    if not isinstance(items, list):
        problems.append(f"{where} is {json_kind(items)}, not an array")
        return None
    mapped: list[JsonObject] = []
    for index, item in enumerate(items):
        at = f"{where}/{index}"
        if not isinstance(item, Mapping):
            problems.append(f"{at} is {json_kind(item)}, not an item")
            continue
        line: JsonObject = {}
        description = _text(item.get("description"))
        if description is None:
            problems.append(f"{at} has no description")
        line["description"] = description
        try:
            line["quantity"] = _quantity(_decimal(item.get("quantity"), f"{at}/quantity"))
        except ValueError as exc:
            problems.append(str(exc))
        unit = item.get("unit")
        unit = unit if isinstance(unit, Mapping) else {}
        line["unit"] = _text(unit.get("name")) or _text(unit.get("id"))
        if line["unit"] is None:
            problems.append(f"{at}/unit has no name")
        unit_value = unit.get("value")
        if not isinstance(unit_value, Mapping):
            problems.append(f"{at}/unit has no value (the unit price)")
        else:
            try:
                price = _decimal(unit_value.get("amount"), f"{at}/unit/value/amount")
                line["unit_price"] = _unit_price(price)
            except ValueError as exc:
                problems.append(str(exc))
            price_currency = unit_value.get("currency")
            if price_currency is not None and price_currency != currency:
                problems.append(
                    f"{at}/unit/value/currency {price_currency!r} differs from the contract's"
                    f" {currency!r}"
                )
        classification = item.get("classification")
        if classification is not None:
            scheme = code = None
            if isinstance(classification, Mapping):
                scheme = _text(classification.get("scheme"))
                code = _identifier(classification.get("id"))
            if scheme is None or code is None:
                problems.append(f"{at}/classification needs both a scheme and an id")
            else:
                line["classification"] = {"scheme": scheme, "id": code}
        mapped.append(line)
    return mapped


def _documents(documents: object, where: str, problems: list[str]) -> list[JsonObject] | None:
    if documents is None or documents == []:
        return None
    if not isinstance(documents, list):
        problems.append(f"{where} is {json_kind(documents)}, not an array")
        return None
    mapped: list[JsonObject] = []
    for index, document in enumerate(documents):
        at = f"{where}/{index}"
        if not isinstance(document, Mapping):
            problems.append(f"{at} is {json_kind(document)}, not a document")
            continue
        title, url = _text(document.get("title")), _text(document.get("url"))
        if title is None or url is None:
            problems.append(f"{at} needs a title and a url")
            continue
        entry: JsonObject = {"title": title, "url": url}
        if document.get("sha256") is not None:
            entry["sha256"] = document["sha256"]
        mapped.append(entry)
    return mapped


def _order_from_contract(
    release: _Release, contract: object, pointer: str, missing_tax: MissingTax
) -> OcdsItem:
    if not isinstance(contract, Mapping):
        return OcdsItem(pointer, None, f"contract is {json_kind(contract)}, not an object")
    problems: list[str] = []
    if isinstance(release.buyer, str):
        problems.append(release.buyer)

    supplier: JsonObject | str | None = None
    award_id = _identifier(contract.get("awardID"))
    if award_id is None:
        problems.append("contract has no awardID, so no supplier")
    elif award_id not in release.awards:
        problems.append(
            f"contract awardID {award_id!r} matches no award in {release.pointer}/awards"
        )
    else:
        award_pointer, award = release.awards[award_id]
        suppliers = award.get("suppliers")
        if not isinstance(suppliers, list) or len(suppliers) != 1:
            count = len(suppliers) if isinstance(suppliers, list) else 0
            problems.append(
                f"award {award_pointer} has {count} suppliers; a purchase order has exactly one"
            )
        else:
            supplier = release.organization(
                suppliers[0], "supplier", f"{award_pointer}/suppliers/0"
            )
            if isinstance(supplier, str):
                problems.append(supplier)

    value = contract.get("value")
    currency = _currency(value, f"{pointer}/value", problems)
    amounts = _amounts(value, f"{pointer}/value", missing_tax, problems)
    issued_at = _text(contract.get("dateSigned")) or _text(release.data.get("date"))
    if issued_at is None:
        problems.append("contract has no dateSigned and the release no date")
    order_number = _identifier(contract.get("id"))
    if order_number is None:
        problems.append("contract has no id (the order number)")
    items = _items(contract.get("items"), f"{pointer}/items", currency, problems)
    documents = _documents(contract.get("documents"), f"{pointer}/documents", problems)
    if problems:
        return OcdsItem(pointer, None, "; ".join(problems))
    assert amounts is not None and isinstance(release.buyer, dict)  # noqa: S101 (no problems)
    subtotal, tax, total = amounts
    order: JsonObject = {
        "order_number": order_number,
        "buyer": release.buyer,
        "supplier": supplier,
        "issued_at": issued_at,
        "currency": currency,
        "subtotal": subtotal,
        "tax": tax,
        "total": total,
        "framework_agreement": release.framework,
        "procurement_method": release.procurement_method,
        "status": _text(contract.get("statusDetails")),
        "items": items,
        "documents": documents,
    }
    try:
        valid = PurchaseOrder.model_validate({k: v for k, v in order.items() if v is not None})
    except ValidationError as exc:
        errors = "; ".join(
            f"{e['field']}: {e['message']}" for e in validation_errors(exc, whole=SCHEMA.whole)
        )
        return OcdsItem(pointer, None, f"not a valid purchase order: {errors}")
    return OcdsItem(pointer, valid.model_dump(mode="json", exclude_none=True), None)


def _orders_from_release(data: object, pointer: str, missing_tax: MissingTax) -> Iterator[OcdsItem]:
    if not isinstance(data, Mapping):
        yield OcdsItem(pointer, None, f"release is {json_kind(data)}, not an object")
        return
    contracts = data.get("contracts")
    if not contracts:
        tags = data.get("tag")
        yield OcdsItem(
            pointer,
            None,
            f"release has no contracts (tag {tags!r}); only contracts map to purchase orders",
        )
        return
    if not isinstance(contracts, list):
        yield OcdsItem(pointer, None, f"contracts is {json_kind(contracts)}, not an array")
        return
    try:
        release = _Release(data, pointer)
    except ValueError as exc:
        for index in range(len(contracts)):
            yield OcdsItem(f"{pointer}/contracts/{index}", None, str(exc))
        return
    for index, contract in enumerate(contracts):
        yield _order_from_contract(release, contract, f"{pointer}/contracts/{index}", missing_tax)


def orders_from_ocds(package: object, *, missing_tax: MissingTax = "report") -> Iterator[OcdsItem]:
    """Map the contracts of an OCDS release or record package to purchase orders.

    Each contract with a buyer, a single supplier and a value becomes a
    PurchaseOrder-shaped dict (validated): order_number <- contract id; buyer
    <- ``buyer`` (or the one party with role buyer) and supplier <- the
    contract's award's only supplier, by their ``PE-RUC`` identifier (or
    additional identifier); total <- value.amount; subtotal and tax <-
    value.amountNet and amountGross - amountNet (extension / OCDS 1.2);
    issued_at <- dateSigned, else the release date; framework_agreement <-
    the framework related process's title; procurement_method <-
    tender.procurementMethodDetails; status <- contract.statusDetails; items
    and documents from the contract's.

    A record is read from its ``compiledRelease``, else its last embedded
    release as is (which may hold only what changed). Releases of one ocid in
    a release package are mapped one by one, not merged: a contract repeated
    in several releases yields the same order again, which ingest records once.

    Without a tax breakdown a contract is reported (its IGV is unknown), unless
    ``missing_tax="zero"``, for publishers whose amounts carry no tax: then
    subtotal = total and tax = 0.00.

    Every contract yields one item; a release (or record) that yields no
    contract yields one item with its problem. Nothing is skipped silently.
    """
    if not isinstance(package, Mapping):
        yield OcdsItem("", None, f"an OCDS package is a JSON object, not {json_kind(package)}")
        return
    releases, records = package.get("releases"), package.get("records")
    if isinstance(releases, list) and records is None:
        for index, release in enumerate(releases):
            yield from _orders_from_release(release, f"/releases/{index}", missing_tax)
    elif isinstance(records, list) and releases is None:
        for index, record in enumerate(records):
            yield from _orders_from_record(record, f"/records/{index}", missing_tax)
    else:
        yield OcdsItem(
            "",
            None,
            "not an OCDS release package or record package: expected a releases array"
            " or a records array",
        )


def _orders_from_record(
    record: object, pointer: str, missing_tax: MissingTax
) -> Iterator[OcdsItem]:
    if not isinstance(record, Mapping):
        yield OcdsItem(pointer, None, f"record is {json_kind(record)}, not an object")
        return
    compiled = record.get("compiledRelease")
    if compiled is not None:
        yield from _orders_from_release(compiled, f"{pointer}/compiledRelease", missing_tax)
        return
    releases = record.get("releases")
    if not isinstance(releases, list) or not releases:
        yield OcdsItem(pointer, None, "record has no compiledRelease and no releases")
        return
    last = releases[-1]
    if isinstance(last, Mapping) and "ocid" not in last and "url" in last:
        yield OcdsItem(
            pointer,
            None,
            "record has no compiledRelease and links its releases (url) instead of embedding"
            " them; import the release package they are published in",
        )
        return
    yield from _orders_from_release(last, f"{pointer}/releases/{len(releases) - 1}", missing_tax)
